import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/cli/args.js';
import { envName, loadSettings } from '../../src/config/load.js';
import type { ProbeError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'bp-settings-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('settings', () => {
  it('has defaults for every required key and is frozen', () => {
    const s = loadSettings();
    expect(s.general.log_level).toBe('info');
    expect(s.rmbt.duration).toBe(7);
    expect(s.rmbt.control_url).toBeUndefined();
    expect(s.rmbt_server.port).toBe(8081);
    expect(Object.isFrozen(s)).toBe(true);
    expect(Object.isFrozen(s.rmbt)).toBe(true);
  });

  it('layers defaults < file < env < flags', () => {
    const optionsFile = file(
      'layers.json',
      JSON.stringify({ log_level: 'debug', rmbt: { threads: 2, duration: 5 }, rmbt_server: { port: 9000 } }),
    );
    const s = loadSettings({
      optionsFile,
      env: { [envName('rmbt', 'duration')]: '9', BANDWIDTH_PROBE_RMBT_SERVER_TLS_PORT: '9443' },
      flags: { rmbt: { duration: '11' } },
    });
    expect(s.general.log_level).toBe('debug');
    expect(s.rmbt.threads).toBe(2);
    expect(s.rmbt.duration).toBe(11);
    expect(s.rmbt_server.port).toBe(9000);
    expect(s.rmbt_server.tls_port).toBe(9443);
  });

  it('names the key and the allowed values for every bad value at once', () => {
    try {
      loadSettings({
        flags: {
          general: { log_level: 'loud' },
          rmbt: { threads: '99', duration: '2.5', submit_results: 'maybe' },
        },
      });
      expect.unreachable();
    } catch (err) {
      const e = err as ProbeError;
      expect(e.code).toBe('BP_ERR_CONFIG');
      expect(e.message).toContain(
        'log_level is "loud"; allowed: one of trace, debug, info, warn, error, fatal, silent',
      );
      expect(e.message).toContain('rmbt.threads is 99; allowed: a whole number from 0 to 20');
      expect(e.message).toContain('rmbt.duration is 2.5; allowed: a whole number from 1 to 30');
      expect(e.message).toContain('rmbt.submit_results is "maybe"; allowed: true or false');
    }
  });

  it('rejects unknown keys (typos) and URLs that are not http(s)', () => {
    expect(() => loadSettings({ optionsFile: file('typo.json', '{"rmbt":{"thread":3}}') })).toThrow(
      /rmbt.thread .* is not a known setting/,
    );
    expect(() => loadSettings({ flags: { rmbt: { control_url: 'ftp://x' } } })).toThrow(
      /http:\/\/ or https:\/\//,
    );
  });

  it('a broken options file is a coded error; a missing one only when asked for', () => {
    expect(() => loadSettings({ optionsFile: file('broken.json', '{"log_level": ') })).toThrow(
      expect.objectContaining({ code: 'BP_ERR_CONFIG_FILE' }),
    );
    expect(() => loadSettings({ optionsFile: file('array.json', '[]') })).toThrow(/JSON object/);
    expect(loadSettings({ optionsFile: join(dir, 'absent.json') }).general.log_level).toBe('info');
    expect(() => loadSettings({ optionsFile: join(dir, 'absent.json'), optionsFileRequired: true })).toThrow(
      expect.objectContaining({ code: 'BP_ERR_CONFIG_FILE' }),
    );
  });

  it('null clears an optional key', () => {
    expect(
      loadSettings({ optionsFile: file('null.json', '{"rmbt":{"port":null}}') }).rmbt.port,
    ).toBeUndefined();
  });
});

describe('command-line flags from the schema', () => {
  it('parses --key value, --key=value, booleans and --no-', () => {
    const a = parseArgs(
      ['--threads', '3', '--duration=5', '--tls-insecure', '--no-submit-results', '--json', 'x'],
      ['general', 'rmbt'],
      [{ name: 'json', description: '', takesValue: false }],
    );
    expect(a.settings.rmbt).toEqual({
      threads: '3',
      duration: '5',
      tls_insecure: 'true',
      submit_results: 'false',
    });
    expect(a.extra).toEqual({ json: true });
    expect(a.positionals).toEqual(['x']);
  });

  it('a switch takes an optional true|false after it, as the help says', () => {
    const json = [{ name: 'json', description: '', takesValue: false }];
    const a = parseArgs(
      [
        '--tls-insecure',
        'false',
        '--submit-results',
        'true',
        '--loop-mode',
        '--threads',
        '2',
        '--json',
        'false',
      ],
      ['general', 'rmbt'],
      json,
    );
    expect(a.settings.rmbt).toEqual({
      tls_insecure: 'false',
      submit_results: 'true',
      loop_mode: 'true',
      threads: '2',
    });
    // `--json false` is the switch off, not a stray argument
    expect(a.extra).toEqual({});
    expect(a.positionals).toEqual([]);
    // anything else after a switch is not its value
    const b = parseArgs(['--tls-insecure', 'yes'], ['rmbt'], []);
    expect(b.settings.rmbt).toEqual({ tls_insecure: 'true' });
    expect(b.positionals).toEqual(['yes']);
    expect(() => parseArgs(['--json=maybe'], ['rmbt'], json)).toThrow(/true or false/);
    // and the value reaches the settings as a boolean
    const s = loadSettings({ flags: parseArgs(['--tls-insecure', 'false'], ['rmbt'], []).settings });
    expect(s.rmbt.tls_insecure).toBe(false);
  });

  it('rejects unknown flags and missing values with a usage error', () => {
    expect(() => parseArgs(['--thread', '3'], ['rmbt'], [])).toThrow(
      expect.objectContaining({ code: 'BP_ERR_USAGE' }),
    );
    expect(() => parseArgs(['--threads'], ['rmbt'], [])).toThrow(/needs a value/);
  });
});
