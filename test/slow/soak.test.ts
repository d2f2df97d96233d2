/**
 * Fault soak: the service, in this process, runs SOAK_RUNS scheduled runs (default 200; .ci/run
 * sets a smaller bound) of an RMBT and a btest target, each scheduled every second (6-field cron), against
 * our real servers (child processes) behind a chaos front (test/helpers/chaos.mjs) that refuses, stalls,
 * cuts mid-phase, sends garbage or crawls — while the MQTT broker is restarted twice.
 *
 * Checked: every run ends stored as ok, failed or aborted, failures with a coded reason; every stored run
 * is published exactly once as an event (none lost, none duplicated, across the restarts); after gc() the
 * JS heap grows < 5 MB from the warmed-up service to the end, and RSS does not grow in both halves of
 * that stretch (< 4 MB in one of them, < 24 MB in all); no file descriptors leak.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { type Service, startService } from '../../src/main.js';
import type { RunEvent } from '../../src/mqtt/topics.js';
import { Store } from '../../src/store/store.js';
import { BROKER_PASSWORD, BROKER_USER, Mosquitto, Recorder } from '../helpers/mosquitto.js';
import { freePort, spawnReady } from '../helpers/proc.js';
import { tempDir } from '../helpers/rmbt.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/cli.js');
const RUNS = Number(process.env.SOAK_RUNS ?? 200);
/**
 * Memory is compared from a third of the way in (after the first broker restart, by when the allocator's
 * per-thread arenas and the MQTT client's buffers have reached their working size) to the end.
 */
const WARM = Math.floor(RUNS / 3) + 2;
const KEY = 'soak-shared-key-0123456789';
const children: ChildProcess[] = [];

const child = (args: string[], ready: RegExp) => spawnReady('node', args, ready, children);

const fdCount = () => readdirSync('/proc/self/fd').length;
/** what the descriptors are: socket, pipe, anon_inode:[eventfd], a file… (counts per kind) */
const fdKinds = () => {
  const out: Record<string, number> = {};
  for (const fd of readdirSync('/proc/self/fd')) {
    let k: string;
    try {
      k = readlinkSync(`/proc/self/fd/${fd}`)
        .replace(/\[\d+\]$/, '')
        .replace(/^\/.*\//, 'file:');
    } catch {
      continue;
    }
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
};
const memMb = () => {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss / 1048576, heap: m.heapUsed / 1048576 };
};

let broker: Mosquitto;
let svc: Service;
/** descriptors of this process before the service started (broker and servers already up) */
let fdsBefore = 0;
const dataDir = tempDir();

beforeAll(async () => {
  broker = new Mosquitto();
  await broker.start();
  const rmbt = await child(
    [
      CLI,
      'server',
      'rmbt',
      '--bind',
      '127.0.0.1',
      '--plain-port',
      String(await freePort()),
      '--port',
      '0',
      '--tls-port',
      '0',
      '--control-port',
      '0',
      '--secret-key',
      KEY,
      '--data-dir',
      tempDir(),
      '--idle-timeout',
      '5',
      '--handshake-timeout',
      '3',
      '--log-level',
      'warn',
    ],
    /plain RMBT on 127\.0\.0\.1:(\d+)/,
  );
  const btest = await child(
    [
      CLI,
      'server',
      'btest',
      '--bind',
      '127.0.0.1',
      '--port',
      String(await freePort()),
      '--auth',
      'md5',
      '--user',
      'soak',
      '--password',
      'soak-pw',
      '--max-sessions',
      '4',
      '--handshake-timeout',
      '3',
      '--udp-port-start',
      '42001',
      '--data-dir',
      tempDir(),
      '--log-level',
      'warn',
    ],
    /btest server on 127\.0\.0\.1:(\d+)/,
  );
  const chaos = await child(
    [
      join(ROOT, 'test/helpers/chaos.mjs'),
      JSON.stringify({
        routes: [{ target: Number(rmbt.match[1]) }, { target: Number(btest.match[1]) }],
        seed: 20261121,
      }),
    ],
    /READY (\d+) (\d+)/,
  );
  const every = '* * * * * *';
  const settings = loadSettings({
    flags: {
      general: { data_dir: dataDir, log_level: 'silent', engine: 'native' },
      service: { busy_check: 'off', run_timeout: '30' },
      web: { bind: '127.0.0.1', port: '0' },
      mqtt: { url: broker.url, username: BROKER_USER, password: BROKER_PASSWORD },
    },
    env: {
      BANDWIDTH_PROBE_TARGETS: JSON.stringify([
        {
          id: 'rmbt',
          type: 'rmbt',
          server: `127.0.0.1:${chaos.match[1]}`,
          key: KEY,
          transport: 'plain',
          threads: 1,
          duration: 1,
          pretest_duration: 0.1,
          pings: 3,
          ping_duration: 0,
          io_timeout: 2,
          schedule: every,
          jitter: 0,
        },
        {
          id: 'btest',
          type: 'btest',
          host: `127.0.0.1:${chaos.match[2]}`,
          user: 'soak',
          password: 'soak-pw',
          protocol: 'tcp',
          direction: 'both',
          duration: 1,
          io_timeout: 2,
          schedule: every,
          jitter: 0,
        },
      ]),
    },
  });
  fdsBefore = fdCount();
  svc = await startService(settings, createLogger('silent'), {
    version: 'soak',
    birthDelayMs: [20, 50],
    backoffMs: [100, 400],
  });
}, 60_000);

afterAll(async () => {
  await svc?.close().catch(() => {});
  for (const c of children) c.kill('SIGKILL');
  await broker?.stop();
});

describe(`fault soak: ${RUNS} scheduled runs against misbehaving servers, broker restarted twice`, () => {
  it('every run stored with a coded outcome, published exactly once; memory and descriptors flat', async () => {
    const root = `bandwidth_probe/${svc.deviceId}`;
    const events = await Recorder.connect(broker.url, [`${root}/+/event`], `soak-events-${process.pid}`);
    const finished: number[] = [];
    const samples: { n: number; rss: number; heap: number; fds: number; kinds: Record<string, number> }[] =
      [];
    let settle: NodeJS.Timeout | undefined;
    const off = svc.runner.on((e) => {
      if (e.type !== 'finished') return;
      finished.push(e.run_id ?? -1);
      // Sampled between runs, once the finished run's sockets are gone.
      clearTimeout(settle);
      const n = finished.length;
      settle = setTimeout(() => samples.push({ n, ...memMb(), fds: fdCount(), kinds: fdKinds() }), 150);
    });

    const restarts = [Math.floor(RUNS / 3), Math.floor((2 * RUNS) / 3)];
    /** when each broker stop was asked for and when the broker had exited */
    const stops: { from: number; to: number }[] = [];
    const deadline = Date.now() + RUNS * 6_000 + 60_000;
    while (finished.length < RUNS && Date.now() < deadline) {
      if (restarts.length && finished.length >= restarts[0]!) {
        restarts.shift();
        const from = Date.now();
        await broker.stop();
        stops.push({ from, to: Date.now() });
        await new Promise((r) => setTimeout(r, 3000));
        await broker.start();
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    off();
    expect(finished.length).toBeGreaterThanOrEqual(RUNS);
    await new Promise((r) => setTimeout(r, 300));

    const warm = samples.filter((s) => s.n >= WARM && s.n < WARM + 10);
    const end = samples.slice(-10);
    const min = (xs: { rss: number; heap: number; fds: number }[], k: 'rss' | 'heap' | 'fds') =>
      Math.min(...xs.map((x) => x[k]));
    // RSS in three windows of 5 (warmed up, half-way to the end, the end): a leak grows both halves, the
    // allocator's retention comes in lumps (one CI run read +10.9 MB from warm to end with the JS heap
    // flat at 35.3 → 35.4 MB; the next read +4.4).
    const mid = Math.floor((WARM + RUNS) / 2);
    const rounds = [
      min(
        samples.filter((s) => s.n >= WARM && s.n < WARM + 5),
        'rss',
      ),
      min(
        samples.filter((s) => s.n >= mid && s.n < mid + 5),
        'rss',
      ),
      min(samples.slice(-5), 'rss'),
    ];

    // Stop the service: a run in progress ends as aborted, is stored and published like any other.
    await svc.close();
    // The history as a fresh start would find it.
    const store = Store.open(dataDir);
    const runs = store.summaries({ limit: 10_000 });
    const publishedInStore = new Set(store.unpublished(10_000).length ? [] : runs.map((r) => r.id));
    const counts = store.counts();
    expect(store.integrity()).toBe('ok');
    store.close();
    const byCode: Record<string, number> = {};
    for (const r of runs)
      if (r.status !== 'ok') byCode[r.error_code ?? 'none'] = (byCode[r.error_code ?? 'none'] ?? 0) + 1;

    // Every run was published exactly once.
    const ids = new Set(runs.map((r) => r.id));
    const until = Date.now() + 30_000;
    const received = () =>
      events.messages
        .filter((m) => m.topic.endsWith('/event'))
        .map((m) => ({ id: (JSON.parse(m.payload) as RunEvent).run_id, dup: m.dup }));
    while (Date.now() < until && [...ids].some((id) => !received().some((c) => c.id === id)))
      await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1000));
    const copies = received();
    const seen = copies.map((c) => c.id);
    const lostAtBroker = (id: number) => {
      // A run the broker acknowledged (the store marks it published only on PUBACK) in the last second
      // before or during its shutdown: Mosquitto can exit before the message reaches a persistent
      // subscriber's session. That is the broker's durability, not the probe's; it is reported apart
      // and allowed once per restart.
      const r = runs.find((x) => x.id === id);
      const t = r ? Date.parse(r.finished_at) : Number.NaN;
      return stops.some((s) => t >= s.from - 1000 && t <= s.to);
    };
    const unseen = [...ids].filter((id) => !seen.includes(id));
    const brokerShutdownLoss = unseen.filter(lostAtBroker);
    const missing = unseen.filter((id) => !lostAtBroker(id));
    // A second copy the broker marked DUP is its own re-delivery to this persistent session after a
    // restart (the recorder's PUBACK was still unread when Mosquitto stopped): QoS 1 is at least once
    // between broker and subscriber, and the probe did not send it twice. Reported apart, allowed once
    // per restart. A copy without DUP is a second PUBLISH from the probe: never allowed.
    const redelivered = copies.filter((c, i) => c.dup && copies.slice(0, i).some((x) => x.id === c.id));
    const dup = [...ids].filter((id) => copies.filter((x) => x.id === id && !x.dup).length > 1);
    const strangers = seen.filter((x) => x === null || !ids.has(x));
    await events.close();
    await new Promise((r) => setTimeout(r, 500));
    const fdsAfter = fdCount();

    const report = {
      runs: runs.length,
      counts,
      failures_by_code: byCode,
      events: seen.length,
      missing: missing.length,
      lost_in_broker_shutdown: brokerShutdownLoss,
      duplicated: dup.length,
      redelivered_by_broker: redelivered.map((c) => c.id),
      rss_mb: {
        warm: min(warm, 'rss').toFixed(1),
        end: min(end, 'rss').toFixed(1),
        rounds: rounds.map((x) => x.toFixed(1)),
      },
      heap_used_mb: { warm: min(warm, 'heap').toFixed(1), end: min(end, 'heap').toFixed(1) },
      fds: { before_start: fdsBefore, warm: min(warm, 'fds'), end: min(end, 'fds'), after_close: fdsAfter },
      fd_kinds: {
        warm: warm.find((x) => x.fds === min(warm, 'fds'))?.kinds,
        end: end.find((x) => x.fds === min(end, 'fds'))?.kinds,
      },
    };
    console.log(JSON.stringify(report, null, 1));

    expect(runs.length).toBeGreaterThanOrEqual(RUNS);
    for (const r of runs) {
      expect(['ok', 'failed', 'aborted']).toContain(r.status);
      if (r.status !== 'ok') expect(r.error_code, JSON.stringify(r)).toMatch(/^BP_ERR_[A-Z0-9_]+$/);
    }
    // The chaos front made both kinds of outcome happen.
    expect(counts.ok).toBeGreaterThan(RUNS / 5);
    expect(counts.failed).toBeGreaterThan(RUNS / 10);
    expect(missing).toEqual([]);
    expect(brokerShutdownLoss.length).toBeLessThanOrEqual(stops.length);
    for (const id of brokerShutdownLoss) expect(publishedInStore.has(id)).toBe(true);
    expect(dup).toEqual([]);
    expect(redelivered.length).toBeLessThanOrEqual(stops.length);
    expect(strangers).toEqual([]);
    expect(rounds.every(Number.isFinite), JSON.stringify(rounds)).toBe(true);
    // A leak of 0.25 MB per run grows each half of a 50-run soak by 4 MB (of a 200-run one by 16 MB).
    expect(Math.min(rounds[1]! - rounds[0]!, rounds[2]! - rounds[1]!)).toBeLessThan(4);
    expect(rounds[2]! - rounds[0]!).toBeLessThan(24);
    expect(min(end, 'heap') - min(warm, 'heap')).toBeLessThan(5);
    // Descriptors: everything the service opened is closed again (strict), and while it ran the count
    // did not grow with the number of runs. The samples are taken between runs, but the next run starts
    // at once and a run holds a few sockets, so the running check allows a handful; a leak of one per
    // run or per few runs fails it.
    expect(fdsAfter).toBeLessThanOrEqual(fdsBefore);
    expect(min(end, 'fds') - min(warm, 'fds')).toBeLessThanOrEqual(6);
  }, 3_600_000);
});
