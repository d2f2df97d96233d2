import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BtestServer } from '../../src/btest/server.js';
import { loadSettings } from '../../src/config/load.js';
import type { ServiceSettings } from '../../src/config/schema.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { Runner, type RunnerEvent } from '../../src/runner/runner.js';
import { Store } from '../../src/store/store.js';
import { tempDir } from '../helpers/rmbt.js';

/** The runner against our btest server on loopback: real runs, real store, real busy sampling on lo. */
let server: BtestServer;
const engine = new JsEngine();

beforeAll(async () => {
  server = new BtestServer({
    host: '127.0.0.1',
    port: 0,
    udpPortStart: 33000,
    auth: 'none',
    user: 'x',
    maxSessions: 4,
    maxDurationS: 60,
    maxBytes: 0,
    handshakeTimeoutMs: 2000,
    engine,
  });
  await server.start();
});
afterAll(() => server.close());

function setup(targets: Record<string, unknown>[], service: Partial<ServiceSettings> = {}) {
  const s = loadSettings({
    flags: { general: { data_dir: tempDir(), log_level: 'silent' }, service: { busy_check: 'off' } },
    env: {
      BANDWIDTH_PROBE_TARGETS: JSON.stringify(
        targets.map((t) => ({ type: 'btest', host: `127.0.0.1:${server.port}`, duration: 1, ...t })),
      ),
    },
  });
  const store = Store.open(s.general.data_dir);
  // run_timeout below the schema's minimum: the Runner takes settings as given (tests keep runs short)
  const runner = new Runner({
    targets: s.targets,
    general: s.general,
    service: { ...s.service, ...service },
    engine,
    store,
    busyWindowMs: 300,
  });
  const events: RunnerEvent[] = [];
  runner.on((e) => events.push(e));
  const finished = (n: number, ms = 30_000) =>
    new Promise<void>((resolve, reject) => {
      const until = Date.now() + ms;
      const t = setInterval(() => {
        if (events.filter((e) => e.type === 'finished').length >= n) {
          clearInterval(t);
          resolve();
        } else if (Date.now() > until) {
          clearInterval(t);
          reject(
            new Error(`only ${events.filter((e) => e.type === 'finished').length} of ${n} runs finished`),
          );
        }
      }, 20);
    });
  return { runner, store, events, finished };
}

describe('Runner', () => {
  it('runs one target at a time, in order, and does not queue a target twice', async () => {
    const { runner, store, events, finished } = setup([
      { id: 'a' },
      { id: 'b' },
      { id: 'c', enabled: false },
    ]);
    expect(runner.enqueue('all', 'schedule')).toEqual(['a', 'b']);
    expect(runner.enqueue('a', 'manual')).toEqual([]); // running already
    expect(runner.enqueue('b', 'manual')).toEqual([]); // queued already
    expect(runner.status().queued).toEqual(['b']);
    await finished(2);
    const order = events
      .filter((e) => e.type === 'started' || e.type === 'finished')
      .map((e) => `${e.type}:${e.target}`);
    expect(order).toEqual(['started:a', 'finished:a', 'started:b', 'finished:b']);
    expect(store.counts().ok).toBe(2);
    expect(() => runner.enqueue('nope', 'manual')).toThrow(/unknown target "nope"/);
    // a manual "all" includes disabled targets
    expect(runner.enqueue('all', 'manual')).toEqual(['a', 'b', 'c']);
    await runner.stop();
  });

  it('a run over its time budget is stopped and stored as BP_ERR_RUN_TIMEOUT', async () => {
    const { runner, store, events, finished } = setup([{ id: 'slow', duration: 20 }], { run_timeout: 1 });
    runner.enqueue('slow', 'manual');
    await finished(1, 10_000);
    const f = events.find((e) => e.type === 'finished')!;
    if (f.type !== 'finished') throw new Error('unreachable');
    expect(f.result.status).toBe('failed');
    expect(f.result.error!.code).toBe('BP_ERR_RUN_TIMEOUT');
    expect(store.get(f.run_id!)!.result.error!.code).toBe('BP_ERR_RUN_TIMEOUT');
    await runner.stop();
  });

  it('stop() aborts the run in progress and stores it as aborted', async () => {
    const { runner, store, events } = setup([{ id: 'long', duration: 20 }]);
    runner.enqueue('long', 'schedule');
    while (!events.some((e) => e.type === 'phase' && e.phase === 'test'))
      await new Promise((r) => setTimeout(r, 20));
    const t0 = Date.now();
    await runner.stop();
    expect(Date.now() - t0).toBeLessThan(5000);
    const runs = store.list();
    expect(runs).toHaveLength(1);
    expect(runs[0]!.result.status).toBe('aborted');
    expect(runs[0]!.result.error!.code).toBe('BP_ERR_ABORTED');
    expect(runner.enqueue('long', 'manual')).toEqual([]);
  });

  it('thresholds flag below_threshold; the CPU figures are recorded', async () => {
    const { runner, events, finished } = setup([{ id: 'a', threshold_download: 1e6 }]);
    runner.enqueue('a', 'manual');
    await finished(1);
    const f = events.find((e) => e.type === 'finished');
    if (f?.type !== 'finished') throw new Error('no run');
    expect(f.result.flags).toContain('below_threshold');
    expect(f.result.thresholds).toEqual({ download_mbps: 1e6, missed: ['download'] });
    expect(f.result.cpu.machine_percent).toBeGreaterThan(0);
    expect(f.result.trigger).toBe('manual');
    await runner.stop();
  });
});

/** Loopback traffic for the busy check to see: a local TCP pair moving data until stopped (bounded). */
async function loopbackTraffic(maxMs: number): Promise<() => void> {
  const sink = net.createServer((s) => s.resume());
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const c = net.connect((sink.address() as net.AddressInfo).port, '127.0.0.1');
  const buf = Buffer.alloc(64 * 1024);
  let on = true;
  const until = Date.now() + maxMs;
  const pump = () => {
    while (on && Date.now() < until && c.write(buf));
    if (on && Date.now() < until) c.once('drain', pump);
  };
  c.once('connect', pump);
  return () => {
    on = false;
    c.destroy();
    sink.close();
  };
}

describe('busy line', () => {
  it('traffic on the interface postpones a scheduled run (bounded), then runs it flagged link_busy', async () => {
    const { runner, events, finished } = setup([{ id: 'a' }], {
      busy_check: 'postpone',
      busy_interface: 'lo',
      busy_traffic: 50,
      busy_rtt: 0,
      busy_retries: 1,
      busy_retry_delay: 1,
    });
    const stop = await loopbackTraffic(20_000);
    try {
      runner.enqueue('a', 'schedule');
      await finished(1);
    } finally {
      stop();
    }
    const postponed = events.filter((e) => e.type === 'postponed');
    expect(postponed).toHaveLength(1);
    const f = events.find((e) => e.type === 'finished');
    if (f?.type !== 'finished') throw new Error('no run');
    expect(f.result.flags).toContain('link_busy');
    expect(f.result.pre).toMatchObject({ busy: true, postponed: 1, interface: 'lo' });
    expect(f.result.pre!.traffic_mbps).toBeGreaterThan(50);
    await runner.stop();
  });

  it('below the traffic limit the line is not busy (the figure is recorded)', async () => {
    // Other test files move Gbit/s over lo in parallel, so "quiet" here means under the schema's maximum.
    const { runner, events, finished } = setup([{ id: 'a' }], {
      busy_check: 'postpone',
      busy_interface: 'lo',
      busy_traffic: 100_000,
      busy_rtt: 0,
    });
    runner.enqueue('a', 'schedule');
    await finished(1);
    const f = events.find((e) => e.type === 'finished');
    if (f?.type !== 'finished') throw new Error('no run');
    expect(f.result.pre!.busy).toBe(false);
    expect(f.result.pre!.traffic_mbps).toBeGreaterThanOrEqual(0);
    expect(f.result.flags).not.toContain('link_busy');
    await runner.stop();
  });

  it('a manual run on a busy line is flagged, never postponed', async () => {
    const { runner, events, finished } = setup([{ id: 'a' }], {
      busy_check: 'postpone',
      busy_interface: 'lo',
      busy_traffic: 50,
      busy_rtt: 0,
    });
    const stop = await loopbackTraffic(20_000);
    try {
      runner.enqueue('a', 'manual');
      await finished(1);
    } finally {
      stop();
    }
    expect(events.some((e) => e.type === 'postponed')).toBe(false);
    const f = events.find((e) => e.type === 'finished');
    if (f?.type !== 'finished') throw new Error('no run');
    expect(f.result.flags).toContain('link_busy');
    await runner.stop();
  });

  it('idle RTT over the rolling minimum counts as queueing delay', async () => {
    const { runner, store, events, finished } = setup([{ id: 'a' }], {
      busy_check: 'flag',
      busy_traffic: 0,
      busy_rtt: 0.01,
    });
    // An earlier quiet run saw an RTT far below what loopback gives now (as if the line had been idle).
    runner.enqueue('a', 'manual');
    await finished(1);
    const first = store.list()[0]!;
    expect(first.result.pre!.idle_rtt_ms).toBeGreaterThan(0);
    expect(first.result.pre!.busy).toBe(false); // no baseline yet
    const fake = { ...first.result, pre: { ...first.result.pre!, idle_rtt_ms: 0.0001 } };
    store.insert(fake);
    runner.enqueue('a', 'manual');
    await finished(2);
    const second = events.filter((e) => e.type === 'finished')[1];
    if (second?.type !== 'finished') throw new Error('no run');
    expect(second.result.pre!.baseline_rtt_ms).toBe(0.0001);
    expect(second.result.pre!.busy).toBe(true);
    expect(second.result.flags).toContain('link_busy');
    await runner.stop();
  });
});
