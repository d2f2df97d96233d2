/**
 * Latency under load on loopback, both engines: every run has idle, download and upload sets;
 * the probe connection's bytes stay out of the speed; a server that refuses the extra connection still
 * gives a good run that says why; btest measures TCP connect round trips.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureBtest } from '../../src/btest/measure.js';
import type { BtestServer } from '../../src/btest/server.js';
import { loadSettings } from '../../src/config/load.js';
import type { Settings } from '../../src/config/settings.js';
import type { Engine } from '../../src/engine/types.js';
import type { LatencySet } from '../../src/measure/latency.js';
import type { RunResult } from '../../src/measure/result.js';
import { measureRmbt } from '../../src/rmbt/measure.js';
import type { RunningRmbtServers } from '../../src/rmbt/serve.js';
import type { Transport } from '../../src/rmbt/transport.js';
import { startBtestServer } from '../helpers/btest.js';
import { clientSettings, ENGINES, startServers } from '../helpers/rmbt.js';

function expectSet(s: LatencySet | undefined, method: LatencySet['method'], what: string, min = 3) {
  expect(s, what).toBeDefined();
  expect(s!.method).toBe(method);
  expect(s!.count, what).toBeGreaterThanOrEqual(min);
  expect(s!.samples).toHaveLength(s!.count);
  expect(s!.min_ms).toBeGreaterThan(0);
  expect(s!.min_ms).toBeLessThanOrEqual(s!.median_ms);
  expect(s!.median_ms).toBeLessThanOrEqual(s!.p90_ms);
  expect(s!.p90_ms).toBeLessThanOrEqual(s!.p99_ms);
  expect(s!.p99_ms).toBeLessThanOrEqual(s!.max_ms);
  expect(s!.error, what).toBeUndefined();
}

describe.each(ENGINES)('latency under load, $name engine', ({ make }) => {
  let engine: Engine;
  let servers: RunningRmbtServers;
  let capped: RunningRmbtServers;
  let settings: Settings;
  let btest: BtestServer;

  beforeAll(async () => {
    engine = make();
    ({ servers, settings } = await startServers(engine));
    // a server that lets a token hold 2 connections: a 2-thread run leaves no room for the probe one
    ({ servers: capped } = await startServers(engine, { max_connections_per_token: '2' }));
    btest = await startBtestServer(engine, { auth: 'none' });
  });
  afterAll(async () => {
    await servers.close();
    await capped.close();
    await btest.close();
  });

  const rmbt = (s: RunningRmbtServers, transport: Transport, over: Record<string, string> = {}) =>
    measureRmbt(
      clientSettings({
        server: `127.0.0.1:${s.measurement.portOf(transport === 'plain' || transport === 'tls' ? 'plain' : 'http', transport === 'tls' || transport === 'https' || transport === 'wss')}`,
        key: s.keys[0]!,
        transport,
        tls_insecure: 'true',
        duration: '2',
        ...over,
      }),
      { engine, general: settings.general },
    );

  for (const transport of ['plain', 'https', 'wss'] as const) {
    it(`RMBT ${transport}: idle, download and upload sets, connect times, RPM and a grade`, async () => {
      const r = await rmbt(servers, transport, { threads: '2' });
      expect(r.error).toBeUndefined();
      expect(r.status).toBe('ok');
      const l = r.latency!;
      expectSet(l.idle, 'rmbt_ping', 'idle');
      // 2 s phases, a PING every 100 ms: about 20 each (at least 5 on a busy machine)
      expectSet(l.download, 'rmbt_ping', 'download', 5);
      expectSet(l.upload, 'rmbt_ping', 'upload', 5);
      expect(l.download!.count).toBeLessThanOrEqual(25);
      // a fresh connection every second from 0.5 s: two per 2 s phase
      for (const d of [l.download!, l.upload!]) {
        expect(d.connect?.count).toBeGreaterThanOrEqual(1);
        expect(d.connect!.median_ms).toBeGreaterThan(0);
      }
      expect(l.unavailable).toBeUndefined();
      expect(l.responsiveness_rpm).toBeGreaterThan(0);
      expect(l.grade).toMatch(/^(A\+|A|B|C|D|F)$/);
      expect(Object.keys(l.bufferbloat_ms!)).toEqual(['download', 'upload']);
      // the probe connection carries no bulk data: the speed counts the two measuring streams only,
      // and what the probes moved is a few hundred bytes a second
      expect(r.download!.streams).toBe(2);
      expect(r.download!.per_stream).toHaveLength(2);
      for (const d of [l.download!, l.upload!]) {
        expect(d.probe_bytes).toBeGreaterThan(0);
        expect(d.probe_bytes! / d.count).toBeLessThan(200);
      }
      expect(l.download!.probe_bytes! / r.download!.bytes_total).toBeLessThan(0.001);
    });
  }

  it('RMBT: a server that refuses the extra connection still gives a good run and says why', async () => {
    const r = await rmbt(capped, 'plain', { threads: '2' });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe('ok');
    expect(r.download!.mbps).toBeGreaterThan(0);
    expect(r.upload!.mbps).toBeGreaterThan(0);
    const l = r.latency!;
    expectSet(l.idle, 'rmbt_ping', 'idle');
    expect(l.download).toBeUndefined();
    expect(l.upload).toBeUndefined();
    expect(l.responsiveness_rpm).toBeUndefined();
    expect(l.grade).toBeUndefined();
    expect(l.unavailable).toMatch(/refused a connection for latency probes/);
  });

  it('RMBT: loaded_latency off measures only the idle set', async () => {
    const r = await rmbt(servers, 'plain', { threads: '1', loaded_latency: 'false' });
    expect(r.status).toBe('ok');
    expectSet(r.latency!.idle, 'rmbt_ping', 'idle');
    expect(r.latency!.download).toBeUndefined();
    expect(r.latency!.unavailable).toBeUndefined();
  });

  const bt = (over: Record<string, string>): Promise<RunResult> =>
    measureBtest(
      loadSettings({
        flags: {
          btest: { host: `127.0.0.1:${btest.port}`, duration: '2', io_timeout: '3', ...over },
        },
      }).btest,
      { engine, general: settings.general },
    );

  for (const [direction, key] of [
    ['receive', 'download'],
    ['send', 'upload'],
    ['both', 'both'],
  ] as const) {
    it(`btest TCP ${direction}: TCP connect round trips idle and under load (${key})`, async () => {
      const r = await bt({ direction, protocol: 'tcp' });
      expect(r.status).toBe('ok');
      const l = r.latency!;
      expectSet(l.idle, 'tcp_connect', 'idle', 5);
      expect(l.idle!.count).toBe(5);
      // one every 200 ms from 200 ms into a 2 s transfer
      expectSet(l[key], 'tcp_connect', key, 4);
      for (const other of ['download', 'upload', 'both'] as const)
        if (other !== key) expect(l[other]).toBeUndefined();
      expect(l.grade).toBeDefined();
      expect(l.responsiveness_rpm).toBeGreaterThan(0);
    });
  }

  it('btest UDP receive: connects under a UDP flood count as download latency', async () => {
    const r = await bt({ direction: 'receive', protocol: 'udp', remote_tx_speed: '50000000' });
    expect(r.status).toBe('ok');
    expectSet(r.latency!.download, 'tcp_connect', 'download', 4);
  });
});
