import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsEngine } from '../../src/engine/jsEngine.js';
import type { RunResult } from '../../src/measure/result.js';
import type { RunningRmbtServers } from '../../src/rmbt/serve.js';
import { startServers, tempDir } from '../helpers/rmbt.js';

/**
 * `measure rmbt`'s direct-mode and load flags, the built CLI against our own servers in this process (so the
 * child is spawned asynchronously: a blocking spawn would stop the servers it talks to).
 */
const CLI = join(import.meta.dirname, '../../dist/cli.js');
const QUICK = ['--pretest-duration', '0.2', '--ping-duration', '0.1', '--pings', '3', '--io-timeout', '3'];

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

let servers: RunningRmbtServers;
let dataDir: string;

beforeAll(async () => {
  // the control server hands out 1 s tests; the measurement server allows GETTIME up to 3 s
  const started = await startServers(new JsEngine(), {
    test_duration: '1',
    test_pings: '3',
    max_duration: '3',
  });
  servers = started.servers;
  dataDir = started.settings.general.data_dir;
});
afterAll(async () => {
  await servers?.close();
});

const controlUrl = () => `http://127.0.0.1:${servers.control!.port}/RMBTControlServer`;
const httpPort = () => servers.measurement.listeners.find((l) => !l.tls && l.mode === 'http')!.port;

describe('measure rmbt: --key-file, --debug-control, --duration over a control server', () => {
  it('--key-file reads the first word of the key file our server writes', async () => {
    const keyPath = join(dataDir, 'rmbt-secret.key');
    expect(servers.keyPath).toBe(keyPath);
    // the server's own file, as it wrote it
    const direct = ['measure', 'rmbt', '--server', `127.0.0.1:${httpPort()}`, '--transport', 'http'];
    const ok = await run([...direct, '--key-file', keyPath, '--duration', '1', '--json', ...QUICK]);
    expect(ok.err).not.toMatch(/BP_ERR/);
    expect(ok.code).toBe(0);
    expect((JSON.parse(ok.out) as RunResult).status).toBe('ok');
    // `<key> <label>` with a comment line first: still the key
    const labelled = join(tempDir(), 'key');
    const key = readFileSync(keyPath, 'utf8').trim().split(/\s+/)[0]!;
    writeFileSync(labelled, `# shared with the probe\n${key} probe-lan\n`);
    const ok2 = await run([...direct, '--key-file', labelled, '--duration', '1', ...QUICK]);
    expect(ok2.code).toBe(0);
    // a wrong key: the server refuses the token
    const wrong = join(tempDir(), 'wrong');
    writeFileSync(wrong, 'not-the-key label\n');
    const bad = await run([...direct, '--key-file', wrong, '--duration', '1', ...QUICK]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/BP_ERR_/);
    // an empty or missing file is a configuration error before anything runs
    const empty = join(tempDir(), 'empty');
    writeFileSync(empty, '\n# nothing\n');
    const none = await run([...direct, '--key-file', empty]);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/^BP_ERR_CONFIG: /);
    expect(none.err).toContain(`--key-file ${empty} holds no key`);
    const missing = await run([...direct, '--key-file', join(empty, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^BP_ERR_CONFIG: .*--key-file .*(ENOTDIR|ENOENT)/);
  });

  it('--debug-control prints each request and answer as JSON with the token masked', async () => {
    const r = await run([
      'measure',
      'rmbt',
      '--control-url',
      controlUrl(),
      '--tls-ca',
      servers.certPath!,
      '--data-dir',
      tempDir(),
      '--debug-control',
      '--json',
      ...QUICK,
    ]);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.out) as RunResult;
    const lines = r.err
      .split('\n')
      .filter((l) => l.startsWith('{"control"'))
      .map((l) => (JSON.parse(l) as { control: Record<string, unknown> }).control);
    const urls = lines.map((l) => `${l.kind} ${String(l.url).replace(/^.*RMBTControlServer/, '')}`);
    expect(urls).toEqual([
      'request /settings',
      'answer /settings',
      'request /testRequest',
      'answer /testRequest',
      'request /result',
      'answer /result',
    ]);
    const test = lines[3]!.body as Record<string, unknown>;
    expect(test.test_token).toMatch(/^\*\*\*\(\d+\)$/);
    expect(test.test_uuid).toBe(result.rmbt!.test_uuid);
    // the result submission carries the token too: masked as well; no token text anywhere
    expect((lines[4]!.body as Record<string, unknown>).test_token).toMatch(/^\*\*\*/);
    expect(r.err).not.toMatch(/"test_token":"[^*]/);
    expect(lines[1]!.status).toBe(200);
  });

  it('--duration overrides the control server where the measurement server allows it, and says so where not', async () => {
    const base = [
      'measure',
      'rmbt',
      '--control-url',
      controlUrl(),
      '--tls-ca',
      servers.certPath!,
      '--data-dir',
      tempDir(),
      '--json',
      '--no-submit-results',
      ...QUICK,
    ];
    const two = await run([...base, '--duration', '2']);
    expect(two.code).toBe(0);
    const r = JSON.parse(two.out) as RunResult;
    expect(r.rmbt).toMatchObject({ control_duration_s: 1, duration_s: 2 });
    expect(r.download!.duration_ms).toBeGreaterThan(1500);
    // without --duration the control server's 1 s stands
    const plain = JSON.parse((await run(base)).out) as RunResult;
    expect(plain.rmbt!.control_duration_s).toBeUndefined();
    expect(plain.download!.duration_ms).toBeLessThan(1500);
    // more than the measurement server's max_duration: it answers ERR, and the run names the override
    const long = await run([...base, '--duration', '5']);
    expect(long.code).toBe(1);
    const f = JSON.parse(long.out) as RunResult;
    expect(f.status).toBe('failed');
    expect(f.error!.message).toMatch(
      /asked for 5 s per direction with --duration; the control server handed out 1 s, and the measurement server does not allow more/,
    );
  });
});
