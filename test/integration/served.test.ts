import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureBtest } from '../../src/btest/measure.js';
import { loadSettings } from '../../src/config/load.js';
import type { Engine } from '../../src/engine/types.js';
import { createLogger } from '../../src/log.js';
import { type Service, startService } from '../../src/main.js';
import type { RunResult } from '../../src/measure/result.js';
import type { RunEvent, TargetState } from '../../src/mqtt/topics.js';
import { measureRmbt } from '../../src/rmbt/measure.js';
import { INBOUND_CSV_COLUMNS } from '../../src/store/csv.js';
import type { RunSummary } from '../../src/store/store.js';
import { BROKER_PASSWORD, BROKER_USER, Mosquitto, Recorder } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/proc.js';
import { clientSettings, ENGINES, tempDir } from '../helpers/rmbt.js';

/**
 * Our servers inside `serve`: a MikroTik-style btest client (ours) and our RMBT client test
 * to the service; every test is an inbound run, visible in the API, the exports, the metrics and as HA
 * entities over a real Mosquitto. Daily quotas refuse with a reason. Both engines.
 */
const log = createLogger('silent');
const fast = {
  version: 'test',
  birthDelayMs: [20, 50] as [number, number],
  backoffMs: [100, 400] as [number, number],
};
let broker: Mosquitto;

beforeAll(async () => {
  broker = new Mosquitto();
  await broker.start();
});
afterAll(async () => {
  await broker?.stop();
});

const PASSWORD = 'router-secret';

async function service(
  engine: string,
  over: { btest?: Record<string, string>; rmbt?: Record<string, string>; dataDir?: string } = {},
): Promise<Service> {
  const udp = await freeUdpBase();
  const s = loadSettings({
    flags: {
      general: { data_dir: over.dataDir ?? tempDir(), log_level: 'silent', engine },
      service: { busy_check: 'off', run_on_start: 'false' },
      web: { bind: '127.0.0.1', port: '0' },
      mqtt: { url: broker.url, username: BROKER_USER, password: BROKER_PASSWORD },
      btest_server: {
        enabled: 'true',
        bind: '127.0.0.1',
        password: PASSWORD,
        udp_port_start: String(udp),
        udp_port_count: '4',
        ...over.btest,
      },
      rmbt_server: {
        enabled: 'true',
        bind: '127.0.0.1',
        test_duration: '1',
        test_pings: '5',
        ...over.rmbt,
      },
    },
    // one scheduled target that never runs in the test: the measured history stays apart from Served
    env: {
      BANDWIDTH_PROBE_TARGETS: JSON.stringify([
        { id: 'wan', type: 'btest', host: '127.0.0.1:9', interval: 1440, enabled: false },
      ]),
    },
  });
  return startService(s, log, { ...fast, ephemeralServerPorts: true });
}

/** A UDP port base with four free ports after it (the btest server's UDP range). */
async function freeUdpBase(): Promise<number> {
  const p = await freePort();
  return Math.min(60_000, 20_000 + (p % 30_000));
}

const btestClient = (svc: Service, engine: Engine, over: Record<string, string>) =>
  measureBtest(
    loadSettings({
      flags: {
        btest: {
          host: `127.0.0.1:${svc.inbound!.btest!.port}`,
          user: 'btest',
          password: PASSWORD,
          duration: '1',
          io_timeout: '3',
          loaded_latency: 'false',
          ...over,
        },
      },
    }).btest,
    { engine, general: loadSettings().general },
  );

const rmbtClient = (svc: Service, engine: Engine) => {
  const rmbt = svc.inbound!.rmbt!;
  const control_url = `http://127.0.0.1:${rmbt.control!.port}/RMBTControlServer`;
  return measureRmbt(
    clientSettings({ control_url, tls_ca: rmbt.certPath!, submit_results: 'false', loaded_latency: 'false' }),
    { engine, general: { ...loadSettings().general, data_dir: tempDir() } },
  );
};

async function get<T>(svc: Service, path: string): Promise<T> {
  const r = await fetch(`http://127.0.0.1:${svc.webPort}${path}`);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
  const json = (r.headers.get('content-type') ?? '').startsWith('application/json');
  return (json ? await r.json() : await r.text()) as T;
}

async function inboundRuns(svc: Service, n: number, timeoutMs = 15_000): Promise<RunSummary[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { runs } = await get<{ runs: RunSummary[] }>(svc, '/api/runs?scope=inbound&limit=100');
    if (runs.length >= n || Date.now() > until) return runs;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.each(ENGINES)('serve with its servers on, $name engine', ({ name, make }) => {
  let svc: Service;
  let rec: Recorder;
  let engine: Engine;
  const client: Record<string, RunResult> = {};

  beforeAll(async () => {
    engine = make();
    rec = await Recorder.connect(broker.url, ['homeassistant/#', 'bandwidth_probe/#']);
    svc = await service(name);
  });
  afterAll(async () => {
    await svc?.close();
    await rec?.close();
  });

  it('a btest client (TCP and UDP, each direction) and an RMBT client are inbound runs', async () => {
    for (const [key, over] of [
      ['tcp receive', { protocol: 'tcp', direction: 'receive' }],
      ['tcp send', { protocol: 'tcp', direction: 'send', connections: '2' }],
      ['tcp both', { protocol: 'tcp', direction: 'both' }],
      // 2 s: the client's once-a-second status (with its CPU) must arrive within the test
      ['udp receive', { protocol: 'udp', direction: 'receive', remote_tx_speed: '30000000', duration: '2' }],
      ['udp send', { protocol: 'udp', direction: 'send', local_tx_speed: '30000000' }],
    ] as const) {
      const r = await btestClient(svc, engine, over);
      expect(r.error, key).toBeUndefined();
      client[key] = r;
    }
    const rr = await rmbtClient(svc, engine);
    expect(rr.error).toBeUndefined();
    client.rmbt = rr;

    const runs = await inboundRuns(svc, 6);
    expect(runs).toHaveLength(6);
    const oldest = runs.slice().reverse();
    expect(oldest.map((r) => [r.kind, r.inbound?.protocol, r.inbound?.direction])).toEqual([
      ['btest-server', 'tcp', 'receive'],
      ['btest-server', 'tcp', 'send'],
      ['btest-server', 'tcp', 'both'],
      ['btest-server', 'udp', 'receive'],
      ['btest-server', 'udp', 'send'],
      ['rmbt-server', 'http+tls', 'both'],
    ]);
    for (const r of runs) {
      expect(r.status).toBe('ok');
      expect(r.target).toBe('inbound');
      expect(r.inbound!.peer).toBe('127.0.0.1');
      expect(r.inbound!.end).toBe('done');
      expect(r.inbound!.duration_ms).toBeGreaterThan(500);
    }
    const [tcpRx, tcpTx, tcpBoth, udpRx, udpTx, rm] = oldest as [
      RunSummary,
      RunSummary,
      RunSummary,
      RunSummary,
      RunSummary,
      RunSummary,
    ];
    for (const r of oldest.slice(0, 5)) expect(r.inbound!.user).toBe('btest');
    // The peer's view: what its client measured, within the difference of timing the same bytes at the
    // two ends (t* over the server's per-connection points, the client's own window).
    const near = (ours: number | null, theirs: number) => {
      expect(ours).not.toBeNull();
      expect(ours! / theirs).toBeGreaterThan(0.6);
      expect(ours! / theirs).toBeLessThan(1.6);
    };
    near(tcpRx.download_mbps, client['tcp receive']!.download!.mbps);
    expect(tcpRx.upload_mbps).toBeNull();
    near(tcpTx.upload_mbps, client['tcp send']!.upload!.mbps);
    expect(tcpTx.download_mbps).toBeNull();
    expect(tcpBoth.download_mbps).toBeGreaterThan(0);
    expect(tcpBoth.upload_mbps).toBeGreaterThan(0);
    // UDP at a fixed 30 Mbit/s: the rate is the rate asked for
    near(udpRx.download_mbps, 30);
    near(udpTx.upload_mbps, 30);
    expect(udpTx.inbound!.lost_packets).not.toBeNull();
    expect(udpTx.loss_percent).toBeLessThan(5);
    // the client's status messages carry its CPU (§9)
    expect(udpRx.inbound!.remote_cpu_percent).toBeGreaterThanOrEqual(0);
    // bytes: what we sent is what the client counted as received (payload, both ends)
    expect(tcpRx.inbound!.bytes_sent).toBeGreaterThan(0);
    expect(tcpRx.inbound!.bytes_received).toBe(0);
    near(rm.download_mbps, client.rmbt!.download!.mbps);
    near(rm.upload_mbps, client.rmbt!.upload!.mbps);
    expect(rm.inbound!.user).toBeNull();

    // the full run: the per-second series and the peer's details
    const full = await get<RunResult & { id: number }>(svc, `/api/runs/${tcpRx.id}`);
    expect(full.download!.series.length).toBeGreaterThanOrEqual(1);
    expect(full.inbound!.local_port).toBe(svc.inbound!.btest!.port);
    expect(full.inbound!.connections).toBe(1);
    const fullRm = await get<RunResult>(svc, `/api/runs/${rm.id}`);
    // the token's uuid: the control server signs the open_test_uuid without its O (specs/rmbt.md §3.1)
    expect(`O${fullRm.inbound!.test_uuid}`).toBe(client.rmbt!.rmbt!.open_test_uuid);
    expect(fullRm.inbound!.pings).toBeGreaterThanOrEqual(5);
  });

  it('the measured history leaves them out; the API, exports and metrics show them', async () => {
    const measured = await get<{ runs: RunSummary[] }>(svc, '/api/runs?scope=measured');
    expect(measured.runs).toEqual([]);
    const all = await get<{ runs: RunSummary[] }>(svc, '/api/runs');
    expect(all.runs).toHaveLength(6);
    const st = await get<{
      served: {
        btest: { port: number; udp_ports: { count: number }; stats: { sessions: number } };
        rmbt: { control_port: number; stats: { sessions: number } };
        last: RunSummary;
      };
    }>(svc, '/api/status');
    expect(st.served.btest.port).toBe(svc.inbound!.btest!.port);
    expect(st.served.btest.udp_ports.count).toBe(4);
    expect(st.served.btest.stats.sessions).toBe(5);
    expect(st.served.rmbt.stats.sessions).toBeGreaterThan(1);
    expect(st.served.last.kind).toBe('rmbt-server');

    const csv = (await get<string>(svc, '/api/export.csv?scope=inbound')).trim().split('\r\n');
    expect(csv[0]).toBe(INBOUND_CSV_COLUMNS.join(','));
    expect(csv).toHaveLength(7);
    expect(csv[1]).toMatch(/^\d+,btest-server,.*,ok,127\.0\.0\.1,btest,tcp,receive,/);
    const json = await get<{ runs: RunSummary[] }>(svc, '/api/export.json?scope=inbound');
    expect(json.runs.map((r) => r.inbound!.protocol)).toContain('udp');

    const m = await get<string>(svc, '/metrics');
    expect(m).toMatch(/bandwidth_probe_served_sessions_total\{server="btest"\} 5/);
    expect(m).toMatch(/bandwidth_probe_runs_total\{target="inbound",status="ok"\} 6/);
    expect(m).toMatch(/bandwidth_probe_download_bits_per_second\{target="inbound"\} [1-9]/);
    const sent = /bandwidth_probe_served_bytes_total\{server="btest",direction="sent"\} (\d+)/.exec(m);
    expect(Number(sent?.[1])).toBeGreaterThan(1e6);
    expect(m).toMatch(/bandwidth_probe_served_refused_total\{server="btest",reason="quota"\} 0/);
  });

  it('Home Assistant gets one "inbound" target: speeds, peer, last run and a run event', async () => {
    const root = `bandwidth_probe/${svc.deviceId}`;
    const disc = JSON.parse((await rec.waitFor(`homeassistant/device/${svc.deviceId}/config`)).payload) as {
      components: Record<string, Record<string, unknown>>;
    };
    expect(disc.components.inbound_download).toMatchObject({
      platform: 'sensor',
      device_class: 'data_rate',
      unit_of_measurement: 'Mbit/s',
      state_topic: `${root}/inbound/state`,
    });
    expect(disc.components.inbound_download!.expire_after).toBeUndefined();
    expect(disc.components.inbound_upload).toBeDefined();
    expect(disc.components.inbound_peer).toBeDefined();
    expect(disc.components.inbound_loss).toBeDefined();
    expect(disc.components.inbound_event!.event_types).toEqual(['completed', 'failed']);
    expect(disc.components.inbound_run).toBeUndefined(); // nothing to start: the peer starts it
    const state = await rec.waitFor(
      `${root}/inbound/state`,
      (p) => (JSON.parse(p) as TargetState).inbound?.kind === 'rmbt-server',
    );
    const s = JSON.parse(state.payload) as TargetState;
    expect(s.inbound).toMatchObject({ peer: '127.0.0.1', direction: 'both', protocol: 'http+tls' });
    expect(s.download_mbps).toBeGreaterThan(0);
    // retained: HA gets it after a restart
    const late = await Recorder.connect(broker.url, [`${root}/inbound/state`]);
    const kept = JSON.parse((await late.waitFor(`${root}/inbound/state`)).payload) as TargetState;
    await late.close();
    expect(kept.run_id).toBe(s.run_id);
    const ev = rec.messages.filter((x) => x.topic === `${root}/inbound/event`);
    expect(ev.length).toBeGreaterThanOrEqual(6);
    expect((JSON.parse(ev.at(-1)!.payload) as RunEvent).event_type).toBe('completed');
  });
});

describe.each(ENGINES)('daily quotas of the servers inside serve, $name engine', ({ name, make }) => {
  let svc: Service;
  let engine: Engine;
  const dataDir = tempDir();
  beforeAll(async () => {
    engine = make();
    svc = await service(name, {
      btest: { max_daily_tests_per_address: '2', max_daily_bytes_per_address: '40000000' },
      rmbt: { max_daily_tests_per_address: '1' },
      dataDir,
    });
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('btest: a test past the byte budget is ended, the next test is refused; the reason is logged and counted', async () => {
    // 40 MB moves in well under a second on loopback: the 1 s check ends the 3 s test
    const r1 = await btestClient(svc, engine, { protocol: 'tcp', direction: 'receive', duration: '3' });
    // btest has no way to say why: the client sees its peer close mid-test, as a router would
    expect(r1.error?.code).toBe('BP_ERR_PEER_CLOSED');
    const r2 = await btestClient(svc, engine, { protocol: 'tcp', direction: 'receive' });
    expect(r2.status).toBe('failed');
    expect(r2.error?.code).toBe('BP_ERR_BTEST_AUTH');
    const runs = await inboundRuns(svc, 1);
    expect(runs).toHaveLength(1);
    expect(runs[0]!.inbound!.end).toBe('quota');
    expect(runs[0]!.inbound!.duration_ms).toBeLessThan(2900);
    expect(svc.inbound!.btest!.stats.quota).toBe(2);
    const m = await get<string>(svc, '/metrics');
    expect(m).toMatch(/bandwidth_probe_served_refused_total\{server="btest",reason="quota"\} 2/);
  });

  it('RMBT: the second test of an address is refused with ERR BUSY and the quota as the reason', async () => {
    const rmbt = svc.inbound!.rmbt!;
    const run = () => rmbtClient(svc, engine);
    const first = await run();
    expect(first.error).toBeUndefined();
    const second = await run();
    expect(second.status).toBe('failed');
    expect(second.error!.message).toMatch(/daily quota/);
    expect(rmbt.measurement.stats.quota).toBeGreaterThanOrEqual(1);
  });

  it('a restart keeps the budgets: they are re-read from the stored inbound runs', async () => {
    await svc.close();
    svc = await service(name, {
      btest: { max_daily_tests_per_address: '2', max_daily_bytes_per_address: '40000000' },
      rmbt: { max_daily_tests_per_address: '1' },
      dataDir,
    });
    // the btest budget of 40 MB is spent (the stored test moved more), the RMBT one test is used
    const b = await btestClient(svc, engine, { protocol: 'tcp', direction: 'receive' });
    expect(b.error?.code).toBe('BP_ERR_BTEST_AUTH');
    expect(svc.inbound!.btest!.stats.quota).toBe(1);
    const r = await rmbtClient(svc, engine);
    expect(r.error!.message).toMatch(/daily quota: 127\.0\.0\.1 has begun 1 tests/);
  });
});

describe('a server that cannot start', () => {
  it('its port is taken: serve runs on without it, logs the code and shows why', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as net.AddressInfo).port;
    const s = loadSettings({
      flags: {
        general: { data_dir: tempDir(), log_level: 'silent', engine: 'js' },
        service: { busy_check: 'off', run_on_start: 'false' },
        web: { bind: '127.0.0.1', port: '0' },
        mqtt: { enabled: 'off' },
        btest_server: { enabled: 'true', bind: '127.0.0.1', port: String(port), password: PASSWORD },
      },
      env: {
        BANDWIDTH_PROBE_TARGETS: JSON.stringify([{ id: 'wan', type: 'btest', host: '127.0.0.1:9' }]),
      },
    });
    const svc = await startService(s, log, fast);
    try {
      expect(svc.inbound!.btest).toBeUndefined();
      const st = await get<{ served: { errors: { server: string; code: string; message: string }[] } }>(
        svc,
        '/api/status',
      );
      expect(st.served.errors).toHaveLength(1);
      expect(st.served.errors[0]).toMatchObject({ server: 'btest', code: 'BP_ERR_CONFIG' });
      expect(st.served.errors[0]!.message).toMatch(/EADDRINUSE/);
      // the measurements go on: a run of the target happens and is stored (it fails: nothing listens)
      const done = new Promise<string>((r) => {
        const off = svc.runner.on((e) => {
          if (e.type === 'finished') {
            off();
            r(e.result.error?.code ?? 'ok');
          }
        });
      });
      svc.runner.enqueue('wan', 'manual');
      expect(await done).toBe('BP_ERR_CONNECT');
    } finally {
      await svc.close();
      taken.close();
    }
  });
});
