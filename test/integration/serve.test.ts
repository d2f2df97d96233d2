import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BtestServer } from '../../src/btest/server.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import type { RunEvent } from '../../src/mqtt/topics.js';
import { LOCK_FILE } from '../../src/store/lock.js';
import { Store } from '../../src/store/store.js';
import { BROKER_PASSWORD, BROKER_USER, Mosquitto, Recorder } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/rmbt.js';

/** `bandwidth-probe serve` as the add-on runs it (built dist/cli.js), stopped with SIGTERM mid-run. */
const CLI = join(import.meta.dirname, '../../dist/cli.js');
const broker = new Mosquitto();
let btest: BtestServer;

beforeAll(async () => {
  await broker.start();
  btest = new BtestServer({
    host: '127.0.0.1',
    port: 0,
    udpPortStart: 35000,
    auth: 'none',
    user: 'x',
    maxSessions: 4,
    maxDurationS: 60,
    maxBytes: 0,
    handshakeTimeoutMs: 2000,
    engine: new JsEngine(),
  });
  await btest.start();
});
afterAll(async () => {
  await btest.close();
  await broker.stop();
});

describe('serve', () => {
  it('SIGTERM during a run: stored as aborted, event and offline published, exit 0 within 5 s', async () => {
    const dir = tempDir();
    const options = join(dir, 'options.json');
    writeFileSync(
      options,
      JSON.stringify({
        data_dir: join(dir, 'data'),
        log_level: 'info',
        service: { run_on_start: true, busy_check: 'off' },
        web: { bind: '127.0.0.1', port: 0 },
        mqtt: { url: broker.url, username: BROKER_USER, password: BROKER_PASSWORD },
        targets: [{ id: 'router', type: 'btest', host: `127.0.0.1:${btest.port}`, duration: 30 }],
      }),
    );
    const own = ownTopics(join(dir, 'data'));
    const rec = await Recorder.connect(broker.url, ['bandwidth_probe/#']);
    const child = spawn(process.execPath, [CLI, 'serve', '--options', options], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const on = await waitTopic(rec, exact(`${own}/router/running`), (p) => p === 'ON');
      const root = on.topic.replace(/\/router\/running$/, '');
      await new Promise((r) => setTimeout(r, 1000)); // well inside the data phase
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await exited;
      const took = Date.now() - t0;
      expect(code, stderr).toBe(0);
      expect(took).toBeLessThan(5000);
      const ev = JSON.parse((await rec.waitFor(`${root}/router/event`)).payload) as RunEvent;
      expect(ev.event_type).toBe('aborted');
      expect(ev.error_code).toBe('BP_ERR_ABORTED');
      expect(rec.last(`${root}/status`)!.payload).toBe('offline');
      const store = Store.open(join(dir, 'data'));
      const runs = store.list();
      store.close();
      expect(runs.map((r) => [r.result.status, r.published])).toEqual([['aborted', true]]);
      // the offline state is retained for whoever connects later (HA after a restart)
      const late = await Recorder.connect(broker.url, [`${root}/status`]);
      expect((await late.waitFor(`${root}/status`)).payload).toBe('offline');
      await late.close();
      expect(stderr).toMatch(/"msg":"stopping"/);
    } finally {
      child.kill('SIGKILL');
      await rec.close();
    }
  });
});

describe('serve, killed', () => {
  it('SIGKILL: the broker publishes the last will, offline; the next start is clean and online again', async () => {
    const dir = tempDir();
    const options = join(dir, 'options.json');
    writeFileSync(
      options,
      JSON.stringify({
        data_dir: join(dir, 'data'),
        log_level: 'warn',
        service: { busy_check: 'off' },
        web: { bind: '127.0.0.1', port: 0 },
        mqtt: { url: broker.url, username: BROKER_USER, password: BROKER_PASSWORD },
        targets: [{ id: 'router', type: 'btest', host: `127.0.0.1:${btest.port}` }],
      }),
    );
    const own = ownTopics(join(dir, 'data'));
    const rec = await Recorder.connect(broker.url, ['bandwidth_probe/+/status']);
    const start = () => spawn(process.execPath, [CLI, 'serve', '--options', options], { stdio: 'ignore' });
    let child = start();
    try {
      const online = await waitTopic(rec, exact(`${own}/status`), (p) => p === 'online');
      const from = rec.messages.length;
      child.kill('SIGKILL');
      const will = await rec.waitFor(online.topic, (p) => p === 'offline', 10_000, from);
      expect(will.payload).toBe('offline');
      child = start();
      await rec.waitFor(online.topic, (p) => p === 'online', 10_000, rec.messages.length);
    } finally {
      child.kill('SIGKILL');
      await rec.close();
    }
  });
});

describe('serve, one per data dir', () => {
  it('a second serve on the same data dir exits 2 at once; the first stays online without flapping', async () => {
    const dir = tempDir();
    const options = join(dir, 'options.json');
    writeFileSync(
      options,
      JSON.stringify({
        data_dir: join(dir, 'data'),
        log_level: 'warn',
        service: { busy_check: 'off' },
        web: { bind: '127.0.0.1', port: 0 },
        mqtt: { url: broker.url, username: BROKER_USER, password: BROKER_PASSWORD },
        targets: [{ id: 'router', type: 'btest', host: `127.0.0.1:${btest.port}` }],
      }),
    );
    const own = ownTopics(join(dir, 'data'));
    const rec = await Recorder.connect(broker.url, ['bandwidth_probe/+/status']);
    const first = spawn(process.execPath, [CLI, 'serve', '--options', options], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let firstErr = '';
    first.stderr!.on('data', (d) => {
      firstErr += d;
    });
    // Each step is bounded and named, so a hang says where it was and what the first service logged
    // (once this test ran past 90 s beside three other suites; alone it takes ~5 s).
    const t0 = Date.now();
    const step = <T>(what: string, p: Promise<T>, ms = 30_000): Promise<T> =>
      Promise.race([
        p,
        new Promise<never>((_, reject) =>
          setTimeout(
            () =>
              reject(
                new Error(`${what}: not within ${ms} ms (at ${Date.now() - t0} ms); first: ${firstErr}`),
              ),
            ms,
          ).unref(),
        ),
      ]);
    try {
      const online = await step(
        'first online',
        waitTopic(rec, exact(`${own}/status`), (p) => p === 'online'),
      );
      const from = rec.messages.length;
      const second = spawn(process.execPath, [CLI, 'serve', '--options', options], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      second.stderr!.on('data', (d) => {
        err += d;
      });
      const code = await step(
        'second exits',
        new Promise<number | null>((r) => second.once('exit', (c) => r(c))),
      );
      expect(code, err).toBe(2);
      expect(err).toMatch(new RegExp(`BP_ERR_LOCKED: .*process ${first.pid} holds`));
      // the first one was never disturbed: no offline/online flap on its availability topic
      await new Promise((r) => setTimeout(r, 2000));
      expect(rec.messages.slice(from).filter((m) => m.topic === online.topic)).toEqual([]);
      expect(first.exitCode).toBeNull();
      // a clean stop removes the lock: the next start takes the dir without a word
      const stopped = new Promise<number | null>((r) => first.once('exit', (c) => r(c)));
      first.kill('SIGTERM');
      expect(await step('first stops on SIGTERM', stopped)).toBe(0);
      expect(existsSync(join(dir, 'data', LOCK_FILE))).toBe(false);
    } finally {
      first.kill('SIGKILL');
      await rec.close();
    }
    // three service processes start and stop here: ~4 s alone, past 30 s once beside another suite
  }, 90_000);
});

describe('serve started as root drops to run_as', () => {
  it('gives data_dir to the user, changes uid/gid before opening anything, and still measures', async () => {
    const dir = tempDir(); // data_dir itself: its parents stay root's
    const options = join(dir, 'options.json');
    writeFileSync(
      options,
      JSON.stringify({
        data_dir: dir,
        log_level: 'info',
        run_as: '65534:65534',
        service: { busy_check: 'off', run_on_start: true },
        web: { bind: '127.0.0.1', port: 0 },
        mqtt: { enabled: 'off' },
        targets: [{ id: 'router', type: 'btest', host: `127.0.0.1:${btest.port}`, duration: 1 }],
      }),
    );
    // as the image starts it: Node changes ids only with io_uring off (CVE-2024-22017)
    const child = spawn(process.execPath, [CLI, 'serve', '--options', options], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, UV_USE_IO_URING: '0' },
    });
    let err = '';
    child.stderr!.on('data', (d) => {
      err += d;
    });
    try {
      const until = Date.now() + 30_000;
      while (!/"msg":"run finished"|"run_id"/.test(err) && Date.now() < until)
        await new Promise((r) => setTimeout(r, 100));
      expect(err).toMatch(/running without root/);
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      expect(/^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)!.slice(1)).toEqual(['65534', '65534', '65534']);
      expect(/^Gid:\s+(\d+)/m.exec(status)![1]).toBe('65534');
      expect(statSync(join(dir, 'bandwidth-probe.db')).uid).toBe(65534);
      expect(statSync(options).uid).toBe(0); // the options file stays its owner's
      const db = Store.open(dir);
      const runs = db.list();
      db.close();
      expect(runs.map((r) => r.result.status)).toEqual(['ok']);
    } finally {
      child.kill('SIGKILL');
    }
  }, 40_000);
});

/**
 * Gives a data dir a known install id, so a test waits for its own service's topics: a retained
 * `online` of another test's service (killed a moment ago, its will not yet published) once matched a
 * bare /\/status$/, the test started its second service before the first held the lock, and the wrong
 * one of the two was refused.
 */
function ownTopics(dataDir: string): string {
  const id = randomBytes(4).toString('hex');
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(dataDir, 'install-id'), `${id}\n`);
  return `bandwidth_probe/bwprobe_${id}`;
}

const exact = (topic: string) => new RegExp(`^${topic.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

async function waitTopic(rec: Recorder, re: RegExp, pred: (p: string) => boolean, ms = 20_000) {
  const until = Date.now() + ms;
  for (;;) {
    const m = rec.messages.find((x) => re.test(x.topic) && pred(x.payload));
    if (m) return m;
    if (Date.now() > until) throw new Error(`nothing on ${re}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
