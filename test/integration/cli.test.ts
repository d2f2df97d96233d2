import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RunResult } from '../../src/measure/result.js';
import { freePort, spawnReady } from '../helpers/proc.js';
import { tempDir } from '../helpers/rmbt.js';

const CLI = join(import.meta.dirname, '../../dist/cli.js');

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A short demo run: one second each way. */
const QUICK = ['--duration', '1', '--pretest-duration', '0.2', '--ping-duration', '0.1'];

describe('CLI (built dist/cli.js)', () => {
  it('demo measures against our own loopback servers and prints JSON', () => {
    const r = run(['demo', '--json', '--data-dir', tempDir(), ...QUICK], {
      BANDWIDTH_PROBE_TLS_PREFER: 'aes',
    });
    expect(r.err).not.toMatch(/BP_ERR/);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.out) as RunResult;
    expect(result.status).toBe('ok');
    expect(result.download!.mbps).toBeGreaterThan(0);
    expect(result.upload!.mbps).toBeGreaterThan(0);
    expect(result.rmbt!.submitted).toBe(true);
    // The demo speaks TLS, as public deployments do, and the native loop carries it.
    expect(result.server.transport).toMatch(/^(tls|https|wss)$/);
    expect(result.engine).toBe('native');
    expect(result.server.tls?.cipher).toMatch(/^TLS_/);
    // The summary a person reads names the engine and what TLS negotiated.
    const text = run(['demo', '--data-dir', tempDir(), ...QUICK]);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^TLS {7}TLSv1\.3, TLS_(AES_128_GCM_SHA256|CHACHA20_POLY1305_SHA256)$/m);
    expect(text.out).toMatch(/^Engine {4}native, /m);
    // Without native TLS the same run goes over Node's TLS on the js engine, and says so.
    // (the order pinned in both: each process times the AEADs, and near a tie a busy core decides)
    const off = run(['demo', '--json', '--data-dir', tempDir(), ...QUICK], {
      BANDWIDTH_PROBE_NATIVE_TLS: '0',
      BANDWIDTH_PROBE_TLS_PREFER: 'aes',
    });
    expect(off.code).toBe(0);
    const js = JSON.parse(off.out) as RunResult;
    expect(js.status).toBe('ok');
    expect(js.engine).toBe('js');
    expect(js.server.tls?.cipher).toBe(result.server.tls?.cipher);
  });

  it('--csv appends one line per run, with a header only when the file is new; a failed run has its code', () => {
    const dir = tempDir();
    const csv = join(dir, 'runs.csv');
    const short = ['--data-dir', dir, ...QUICK];
    expect(run(['demo', '--csv', csv, ...short]).code).toBe(0);
    const failed = run(['measure', 'rmbt', '--server', '127.0.0.1:1', '--key', 'k', '--csv', csv]);
    expect(failed.code).toBe(1);
    const lines = readFileSync(csv, 'utf8').trimEnd().split('\r\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe(
      'id,target,kind,started_at,finished_at,status,download_mbps,upload_mbps,ping_ms,jitter_ms,loss_percent,download_latency_ms,upload_latency_ms,responsiveness_rpm,bufferbloat_grade,flags,error_code,error,server,engine,trigger',
    );
    const ok = lines[1]!.split(',');
    expect(ok[1]).toBe('demo');
    expect(ok[5]).toBe('ok');
    expect(Number(ok[6])).toBeGreaterThan(0);
    expect(lines[2]).toContain(',failed,');
    expect(lines[2]).toContain('BP_ERR_CONNECT');
    const unwritable = run(['demo', '--csv', join(dir, 'no-such-dir', 'x.csv'), ...short]);
    expect(unwritable.code).toBe(1);
    expect(unwritable.err).toContain('BP_ERR_STORE');
  });

  it('measure btest --interval prints a line per second and direction as btest-rs does', async () => {
    const port = await freePort();
    const kids: ChildProcess[] = [];
    await spawnReady(
      process.execPath,
      [
        CLI,
        'server',
        'btest',
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
        '--auth',
        'none',
        '--data-dir',
        tempDir(),
      ],
      /btest server on/,
      kids,
    );
    try {
      const r = spawnSync(
        process.execPath,
        [
          CLI,
          'measure',
          'btest',
          '--host',
          `127.0.0.1:${port}`,
          '--protocol',
          'udp',
          '--direction',
          'both',
        ].concat([
          '--duration',
          '2',
          '--remote-tx-speed',
          '20000000',
          '--local-tx-speed',
          '20000000',
          '--interval',
        ]),
        { encoding: 'utf8', timeout: 30_000 },
      );
      expect(r.status).toBe(0);
      const tx = r.stderr.match(/^\[ {3}1\] {2}TX {2}\d+\.\d{2} [KMG]bps \(\d+ bytes\) {2}cpu: \d+%\/\d+%$/m);
      const rx = r.stderr.match(
        /^\[ {3}1\] {2}RX {2}\d+\.\d{2} [KMG]bps \(\d+ bytes\) {2}lost: \d+ {2}cpu: \d+%\/\d+%$/m,
      );
      expect(tx, r.stderr).not.toBeNull();
      expect(rx, r.stderr).not.toBeNull();
      // the figures are in btest's Mbps (IP bytes); how close they come to 20 Mbit/s is the btest rate
      // tests' and the bench's business: a second on two busy cores may hold a catch-up burst, or (RX,
      // beside another suite) well under 1 Mbit/s, printed in Kbps — so the unit is checked on TX, which
      // our own pacing sets
      expect(r.stderr).toMatch(/TX {2}\d+\.\d\d Mbps/);
    } finally {
      for (const k of kids) k.kill('SIGKILL');
    }
  });

  it('--syslog sends the log to a collector over UDP in RFC 5424 or 3164; a closed port changes nothing', async () => {
    const sock = dgram.createSocket('udp4');
    const got: string[] = [];
    sock.on('message', (m) => got.push(m.toString()));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const port = (sock.address() as { port: number }).port;
    const demo = (extra: string[]) =>
      new Promise<{ code: number | null }>((res) => {
        const child = spawn(process.execPath, [
          CLI,
          'demo',
          '--json',
          '--data-dir',
          tempDir(),
          ...QUICK,
          '--log-level',
          'info',
          ...extra,
        ]);
        child.stdout.resume();
        child.stderr.resume();
        child.on('close', (code) => res({ code }));
      });
    try {
      // the last datagrams may still be on their way when the process has exited
      const arrived = async () => {
        for (let i = 0; i < 100 && !got.some((l) => l.includes('RMBT session ended')); i++)
          await new Promise((r) => setTimeout(r, 20));
        return got.splice(0);
      };
      expect((await demo(['--syslog', `127.0.0.1:${port}`])).code).toBe(0);
      const modern = await arrived();
      expect(modern.length).toBeGreaterThan(3);
      // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
      for (const line of modern)
        expect(line).toMatch(
          /^<1\d\d>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z \S+ bandwidth-probe \d+ - - \{/,
        );
      expect(modern.some((l) => l.includes('"event":"token"'))).toBe(true);
      expect((await demo(['--syslog', `127.0.0.1:${port}`, '--syslog-format', 'rfc3164'])).code).toBe(0);
      const bsd = await arrived();
      expect(bsd.length).toBeGreaterThan(3);
      for (const line of bsd)
        expect(line).toMatch(/^<1\d\d>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ bandwidth-probe\[\d+\]: \{/);
      // nobody listening: the datagrams go nowhere, the run does not care
      expect((await demo(['--syslog', '127.0.0.1:9'])).code).toBe(0);
    } finally {
      sock.close();
    }
  });

  it('a broken options file stops the process before anything runs, naming the problem', () => {
    const dir = tempDir();
    const f = join(dir, 'options.json');
    writeFileSync(f, '{"log_level": "loud", "rmbt": {"threads": 50}}');
    const r = run(['measure', 'rmbt', '--options', f]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('BP_ERR_CONFIG');
    expect(r.err).toContain('log_level is "loud"; allowed: one of trace');
    expect(r.err).toContain('rmbt.threads is 50; allowed: a whole number from 0 to 20');
    writeFileSync(f, '{not json');
    const r2 = run(['measure', 'rmbt'], { BANDWIDTH_PROBE_OPTIONS: f });
    expect(r2.code).toBe(2);
    expect(r2.err).toContain('BP_ERR_CONFIG_FILE');
  });

  it('measure without a target is a usage error: exit 2 with the usage line, no summary of a run', () => {
    for (const [args, says] of [
      [['measure', 'rmbt', '--json'], 'set --control-url, or --server and --key'],
      [['measure', 'rmbt', '--server', '127.0.0.1:1'], 'needs --key as well'],
      [['measure', 'btest'], 'set --host'],
    ] as const) {
      const r = run([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toContain('BP_ERR_USAGE');
      expect(r.err).toContain(says);
      expect(r.err).toMatch(/^Usage: bandwidth-probe measure (rmbt|btest) /m);
      expect(r.out).toBe('');
      expect(r.err).not.toMatch(/Server\s+:0/);
    }
  });

  it('a bare command prints help; measure and server list their sub-commands; help never cuts a sentence', () => {
    const bare = run([]);
    expect(bare.code).toBe(0);
    expect(bare.out).toMatch(/^bandwidth-probe \d+\.\d+\.\d+\n\nCommands:/);
    // each summary in full: the service's ends with its loopback sentence
    expect(bare.out.replace(/\s+/g, ' ')).toContain(
      'Without targets it measures the built-in loopback servers.',
    );
    for (const l of bare.out.split('\n')) expect(l.length, l).toBeLessThanOrEqual(100);
    const measure = run(['measure', '--help']);
    expect(measure.code).toBe(0);
    expect(measure.out).toContain('bandwidth-probe measure rmbt');
    expect(measure.out).toContain('bandwidth-probe measure btest');
    expect(measure.out).not.toContain('bandwidth-probe serve');
    expect(run(['server']).out).toContain('bandwidth-probe server btest');
    const flagsFirst = run(['--json']);
    expect(flagsFirst.code).toBe(2);
    expect(flagsFirst.err).toContain('a command comes first');
  });

  it("serve: the page and MQTT flags carry their group, so --password is never silently the broker's", () => {
    const help = run(['serve', '--help']).out;
    expect(help).toContain('--web-port');
    expect(help).toContain('--web-password');
    expect(help).toContain('--mqtt-password');
    expect(help).toContain('--mqtt-url');
    const r = run(['serve', '--password', 'x'], { BANDWIDTH_PROBE_DATA_DIR: tempDir() });
    expect(r.code).toBe(2);
    expect(r.err).toContain('unknown flag --password');
  });

  it('a TLS transport on a plain port says which transport the port speaks', async () => {
    const dir = tempDir();
    const port = await freePort();
    const kids: ChildProcess[] = [];
    const srv = await spawnReady(
      process.execPath,
      [
        CLI,
        'server',
        'rmbt',
        '--data-dir',
        dir,
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
        '--control-port',
        '0',
        '--tls-port',
        '0',
      ],
      /HTTP Upgrade\/WebSocket on /,
      kids,
    );
    try {
      const key = readFileSync(join(dir, 'rmbt-secret.key'), 'utf8').trim();
      const r = run([
        'measure',
        'rmbt',
        '--server',
        `127.0.0.1:${port}`,
        '--key',
        key,
        '--transport',
        'https',
        '--io-timeout',
        '2',
      ]);
      expect(r.code).toBe(1);
      expect(r.err).toContain(`port ${port} speaks plain HTTP, not TLS: use --transport http`);
    } finally {
      srv.proc.kill('SIGTERM');
    }
  });

  it('checkpoint on a data dir without a history fails with a message and creates nothing', () => {
    const dir = tempDir();
    const r = run(['checkpoint', '--data-dir', dir]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('BP_ERR_STORE');
    expect(r.err).toContain('no history database');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('unknown commands and flags are usage errors; --help lists every setting with its env name', () => {
    expect(run(['frobnicate']).code).toBe(2);
    const bad = run(['measure', 'rmbt', '--thread', '3']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('unknown flag --thread');
    const help = run(['measure', 'rmbt', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('--control-url');
    expect(help.out).toContain('BANDWIDTH_PROBE_RMBT_TLS_INSECURE');
    expect(run(['--version']).out.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    // every command's flags are unambiguous (parseArgs refuses groups that share a key name)
    for (const c of [['demo'], ['serve'], ['measure', 'btest'], ['server', 'rmbt'], ['server', 'btest']])
      expect(run([...c, '--help']).code, c.join(' ')).toBe(0);
    const serve = run(['serve', '--help']).out;
    expect(serve).toContain('BANDWIDTH_PROBE_MQTT_URL');
    expect(serve).toContain('--busy-check');
  });

  it('serve with a broken targets list exits 2 before doing anything, naming the key', () => {
    const r = run(['serve'], {
      BANDWIDTH_PROBE_TARGETS: '[{"id":"x","type":"btest"}]',
      BANDWIDTH_PROBE_DATA_DIR: tempDir(),
    });
    expect(r.code).toBe(2);
    expect(r.err).toContain('BP_ERR_CONFIG');
    expect(r.err).toContain('targets[0] (btest) needs a host');
  });
});
