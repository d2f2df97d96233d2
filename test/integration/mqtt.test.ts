import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BtestServer } from '../../src/btest/server.js';
import { loadSettings } from '../../src/config/load.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { createLogger } from '../../src/log.js';
import { installId, type Service, startService } from '../../src/main.js';
import type { RunEvent, TargetState } from '../../src/mqtt/topics.js';
import { ensureCert, type TlsCreds } from '../../src/net/certs.js';
import { startBtestServer } from '../helpers/btest.js';
import { BROKER_PASSWORD, BROKER_USER, Mosquitto, Recorder } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/rmbt.js';

type Comp = Record<string, unknown>;
interface Discovery {
  device: { identifiers: string[] };
  origin: { name: string };
  availability_topic: string;
  components: Record<string, Comp & { expire_after?: number; event_types?: string[] }>;
}

/**
 * The service against a real Mosquitto (with a password file) and our own btest server as the measured
 * peer: discovery, states, the run-now button, HA's birth message, a broker outage, bad credentials and
 * the Supervisor lookup.
 */
const log = createLogger('silent');
const certDir = tempDir('bp-mqtt-tls-');
let tlsCreds: TlsCreds;
let broker: Mosquitto;
let btest: BtestServer;

const TARGETS = () => [
  {
    id: 'lan',
    name: 'LAN',
    type: 'btest',
    host: `127.0.0.1:${btest.port}`,
    protocol: 'tcp',
    direction: 'receive',
    duration: 1,
    // any real speed is below this: the problem sensor turns on
    threshold_download: 1e6,
  },
  {
    id: 'lan_udp',
    type: 'btest',
    host: `127.0.0.1:${btest.port}`,
    protocol: 'udp',
    direction: 'receive',
    duration: 1,
    remote_tx_speed: 20_000_000,
    // any real round trip under load is above 0 ms: the problem sensor turns on
    threshold_loaded_latency: 0,
  },
];

function settings(dataDir: string, mqtt: Record<string, string>, targets: unknown[] = TARGETS()) {
  return loadSettings({
    flags: {
      general: { data_dir: dataDir, log_level: 'silent', engine: 'js' },
      service: { busy_check: 'off' },
      web: { bind: '127.0.0.1', port: '0' },
      mqtt,
    },
    env: { BANDWIDTH_PROBE_TARGETS: JSON.stringify(targets) },
  });
}

const auth = () => ({ url: broker.url, username: BROKER_USER, password: BROKER_PASSWORD });
const fast = {
  version: 'test',
  birthDelayMs: [20, 50] as [number, number],
  backoffMs: [100, 400] as [number, number],
};

beforeAll(async () => {
  tlsCreds = await ensureCert(certDir);
  broker = new Mosquitto({ cert: tlsCreds.cert, key: tlsCreds.key });
  await broker.start();
  btest = await startBtestServer(new JsEngine(), { auth: 'none', user: 'x' });
});

afterAll(async () => {
  await btest?.close();
  await broker.stop();
});

describe('MQTT and Home Assistant (real Mosquitto)', () => {
  const dataDir = tempDir();
  let svc: Service;
  let rec: Recorder;

  afterAll(async () => {
    await svc?.close();
    await rec?.close();
  });

  it('publishes availability and one retained device discovery message', async () => {
    rec = await Recorder.connect(broker.url, ['homeassistant/#', 'bandwidth_probe/#']);
    svc = await startService(settings(dataDir, auth()), log, fast);
    const root = `bandwidth_probe/${svc.deviceId}`;
    const avail = await rec.waitFor(`${root}/status`, (p) => p === 'online');
    expect(avail.payload).toBe('online');
    const disc = await rec.waitFor(`homeassistant/device/${svc.deviceId}/config`);
    const cfg = JSON.parse(disc.payload) as Discovery;
    expect(cfg.device.identifiers).toEqual([svc.deviceId]);
    expect(cfg.origin.name).toBe('bandwidth-probe');
    expect(cfg.availability_topic).toBe(`${root}/status`);
    expect(cfg.components.lan_download).toMatchObject({
      platform: 'sensor',
      device_class: 'data_rate',
      unit_of_measurement: 'Mbit/s',
      state_class: 'measurement',
      state_topic: `${root}/lan/state`,
    });
    expect(cfg.components.lan_download!.expire_after).toBeGreaterThan(3 * 3600);
    expect(cfg.components.lan_loss).toBeUndefined(); // TCP: no loss sensor
    expect(cfg.components.lan_udp_loss!.unit_of_measurement).toBe('%');
    expect(cfg.components.lan_below_threshold!.device_class).toBe('problem');
    expect(cfg.components.lan_run!.command_topic).toBe(`${root}/lan/run`);
    expect(cfg.components.lan_event!.event_types).toEqual(['completed', 'failed', 'aborted', 'skipped']);
    // latency under load: btest receive loads the download only
    expect(cfg.components.lan_download_latency).toMatchObject({
      platform: 'sensor',
      device_class: 'duration',
      unit_of_measurement: 'ms',
      state_class: 'measurement',
      value_template: '{{ value_json.download_latency_ms }}',
    });
    expect(cfg.components.lan_download_latency!.expire_after).toBe(cfg.components.lan_download!.expire_after);
    expect(cfg.components.lan_upload_latency).toBeUndefined();
    expect(cfg.components.lan_responsiveness).toMatchObject({ unit_of_measurement: 'RPM' });
    expect(cfg.components.lan_bufferbloat_grade).toMatchObject({
      device_class: 'enum',
      options: ['A+', 'A', 'B', 'C', 'D', 'F'],
    });
    expect(cfg.components.lan_bufferbloat_grade!.unit_of_measurement).toBeUndefined();
    // retained: a client connecting now gets it
    const late = await Recorder.connect(broker.url, [`homeassistant/device/${svc.deviceId}/config`]);
    const got = await late.waitFor(`homeassistant/device/${svc.deviceId}/config`);
    expect(got.retain).toBe(true);
    await late.close();
    // running sensors start OFF
    expect((await rec.waitFor(`${root}/lan/running`)).payload).toBe('OFF');
  });

  it('the run-now button runs the target; running, event and retained state follow', async () => {
    const root = `bandwidth_probe/${svc.deviceId}`;
    const from = rec.messages.length;
    await rec.client.publishAsync(`${root}/lan/run`, 'RUN', { qos: 1 });
    await rec.waitFor(`${root}/lan/running`, (p) => p === 'ON', 10_000, from);
    const ev = JSON.parse(
      (await rec.waitFor(`${root}/lan/event`, () => true, 20_000, from)).payload,
    ) as RunEvent;
    expect(ev.event_type).toBe('completed');
    expect(ev.download_mbps).toBeGreaterThan(0);
    expect(ev.below_threshold).toBe(true);
    const st = await rec.waitFor(`${root}/lan/state`, () => true, 5000, from);
    expect(st.retain).toBe(false); // live delivery; the broker keeps it retained for new subscribers
    const state = JSON.parse(st.payload) as TargetState;
    expect(state.run_id).toBe(ev.run_id);
    expect(state.status).toBe('ok');
    // the latency entities carry values; a direction that was not loaded is null (unknown in HA)
    expect(state.download_latency_ms).toBeGreaterThan(0);
    expect(state.upload_latency_ms).toBeNull();
    expect(state.responsiveness_rpm).toBeGreaterThan(0);
    expect(state.bufferbloat_grade).toMatch(/^(A\+|A|B|C|D|F)$/);
    await rec.waitFor(`${root}/lan/running`, (p) => p === 'OFF', 5000, from);
    expect(svc.store.get(ev.run_id!)!.published).toBe(true);
  });

  it('the plain run topic takes "all" or a target id', async () => {
    const root = `bandwidth_probe/${svc.deviceId}`;
    const from = rec.messages.length;
    await rec.client.publishAsync(`${root}/run`, 'lan_udp', { qos: 1 });
    const ev = JSON.parse(
      (await rec.waitFor(`${root}/lan_udp/event`, () => true, 20_000, from)).payload,
    ) as RunEvent;
    expect(ev.event_type).toBe('completed');
    expect(ev.loss_percent).not.toBeNull();
    // threshold_loaded_latency 0: the loaded median is above it
    expect(ev.download_latency_ms).toBeGreaterThan(0);
    expect(ev.below_threshold).toBe(true);
    expect(rec.messages.slice(from).some((m) => m.topic === `${root}/lan/event`)).toBe(false);
  });

  it('re-announces discovery and states when Home Assistant comes online', async () => {
    const root = `bandwidth_probe/${svc.deviceId}`;
    const from = rec.messages.length;
    const before = svc.publisher()!.status().discovery_sent;
    await rec.client.publishAsync('homeassistant/status', 'online', { qos: 1 });
    await rec.waitFor(`homeassistant/device/${svc.deviceId}/config`, () => true, 5000, from);
    await rec.waitFor(`${root}/lan/state`, () => true, 5000, from);
    expect(svc.publisher()!.status().discovery_sent).toBe(before + 1);
  });

  it('a restart does not re-send unchanged discovery; a removed target is removed and its state cleared', async () => {
    await svc.close();
    svc = await startService(settings(dataDir, auth()), log, fast);
    const root = `bandwidth_probe/${svc.deviceId}`;
    await rec.waitFor(`${root}/status`, (p) => p === 'online', 10_000, rec.messages.length - 1);
    await new Promise((r) => setTimeout(r, 1000));
    expect(svc.publisher()!.status().connected).toBe(true);
    expect(svc.publisher()!.status().discovery_sent).toBe(0);

    await svc.close();
    const from = rec.messages.length;
    svc = await startService(settings(dataDir, auth(), [TARGETS()[0]]), log, fast);
    const topic = `homeassistant/device/${svc.deviceId}/config`;
    const first = JSON.parse((await rec.waitFor(topic, () => true, 10_000, from)).payload) as Discovery;
    expect(first.components.lan_udp_download).toEqual({ platform: 'sensor' });
    const second = await rec.waitFor(topic, (p) => !JSON.parse(p).components.lan_udp_download, 10_000, from);
    expect(Object.keys(JSON.parse(second.payload).components)).not.toContain('lan_udp_download');
    // The removed target's retained state is emptied only after HA has had time to drop its entities
    // (it takes ~110 ms to unsubscribe; emptied earlier, HA logs template errors and "Erroneous JSON").
    const cleared = await rec.waitFor(`${root}/lan_udp/state`, (p) => p === '', 10_000, from);
    expect(rec.messages.indexOf(cleared)).toBeGreaterThan(rec.messages.indexOf(second));
    expect(cleared.at - second.at).toBeGreaterThanOrEqual(2000);
  });

  it('a broker outage loses nothing and duplicates nothing; the runner keeps going', async () => {
    const root = `bandwidth_probe/${svc.deviceId}`;
    // A persistent session: QoS 1 events queue for it while it is away, like HA's would.
    const events = await Recorder.connect(broker.url, [`${root}/+/event`], `bp-test-events-${Date.now()}`);
    const before = svc.store.counts().ok;
    await broker.stop();
    const done: number[] = [];
    const off = svc.runner.on((e) => {
      if (e.type === 'finished' && e.run_id !== undefined) done.push(e.run_id);
    });
    svc.runner.enqueue('lan', 'manual');
    const until = Date.now() + 20_000;
    while (done.length < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    svc.runner.enqueue('lan', 'manual');
    while (done.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    off();
    expect(done).toHaveLength(2);
    expect(svc.store.counts().ok).toBe(before + 2);
    expect(svc.store.unpublished().map((r) => r.id)).toEqual(done);
    expect(svc.publisher()!.status().connected).toBe(false);
    expect(svc.publisher()!.status().last_error?.code).toMatch(/^BP_ERR_MQTT/);
    expect(svc.scheduler.entries().map((e) => e.target)).toEqual(['lan']);

    // a run from long ago that was never published (MQTT was off then) is history, not an event
    const ancient = new Date(Date.now() - 8 * 86_400_000).toISOString();
    const old = svc.store.insert({
      ...svc.store.get(done[0]!)!.result,
      started_at: ancient,
      finished_at: ancient,
    });

    await broker.start();
    for (const id of done)
      await events.waitFor(`${root}/lan/event`, (p) => (JSON.parse(p) as RunEvent).run_id === id, 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    const ids = events.on(`${root}/lan/event`).map((m) => (JSON.parse(m.payload) as RunEvent).run_id);
    for (const id of done) expect(ids.filter((x) => x === id)).toHaveLength(1);
    // in order
    expect(ids.filter((x) => done.includes(x!))).toEqual(done);
    expect(ids).not.toContain(old);
    expect(svc.store.get(old)!.published).toBe(true);
    expect(svc.store.unpublished()).toEqual([]);
    await events.close();
  });
});

describe('MQTT failures and the Supervisor', () => {
  it('a start-up failure (the page port taken) stops the service before anything is announced', async () => {
    const taken = http.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as AddressInfo).port;
    const dir = tempDir();
    const deviceId = `bwprobe_${installId(dir)}`;
    const rec = await Recorder.connect(broker.url, [
      `bandwidth_probe/${deviceId}/#`,
      `homeassistant/device/${deviceId}/#`,
    ]);
    try {
      const s = loadSettings({
        flags: {
          general: { data_dir: dir, log_level: 'silent', engine: 'js' },
          service: { busy_check: 'off', run_on_start: 'true' },
          web: { bind: '127.0.0.1', port: String(port) },
          mqtt: auth(),
        },
        env: { BANDWIDTH_PROBE_TARGETS: JSON.stringify(TARGETS()) },
      });
      await expect(startService(s, log, fast)).rejects.toMatchObject({ code: 'BP_ERR_CONFIG' });
      await new Promise((r) => setTimeout(r, 1000));
      // HA never saw a device that would look healthy and never measure; the lock is free again
      expect(rec.messages.map((m) => m.topic)).toEqual([]);
      taken.close();
      const svc = await startService({ ...s, web: { ...s.web, port: 0 } }, log, fast);
      await svc.close();
    } finally {
      taken.close();
      await rec.close();
    }
  });

  it("a connection lost between a run's event and its state: the event is not sent again, the state follows on reconnect", async () => {
    // A TCP front to the broker that, once armed, cuts the probe's connection at the first packet that
    // carries the target's state topic: the event before it has been acked (the state goes out only then).
    let armed = false;
    let cuts = 0;
    let root = '';
    const front = net.createServer((c) => {
      const b = net.connect(broker.port, '127.0.0.1');
      c.on('data', (d) => {
        // a PUBLISH (type 3) of the state topic
        if (armed && d[0]! >> 4 === 3 && d.includes(`${root}/lan/state`)) {
          armed = false;
          cuts++;
          c.destroy();
          b.destroy();
          return;
        }
        b.write(d);
      });
      b.on('data', (d) => c.write(d));
      const end = () => {
        c.destroy();
        b.destroy();
      };
      c.on('error', end).on('close', end);
      b.on('error', end).on('close', end);
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const url = `mqtt://127.0.0.1:${(front.address() as AddressInfo).port}`;
    const svc = await startService(
      settings(tempDir(), { url, username: BROKER_USER, password: BROKER_PASSWORD }),
      log,
      fast,
    );
    root = `bandwidth_probe/${svc.deviceId}`;
    const rec = await Recorder.connect(broker.url, [`${root}/lan/event`, `${root}/lan/state`]);
    try {
      let until = Date.now() + 10_000;
      // the connect's own publishes (the discovery names the state topic too) are through
      while (!svc.publisher()!.status().discovery_sent && Date.now() < until)
        await new Promise((r) => setTimeout(r, 25));
      expect(svc.publisher()!.status().discovery_sent).toBe(1);
      await new Promise((r) => setTimeout(r, 300));
      armed = true;
      svc.runner.enqueue('lan', 'manual');
      const ev = await rec.waitFor(`${root}/lan/event`, () => true, 20_000);
      const id = (JSON.parse(ev.payload) as RunEvent).run_id;
      // the cut happened, the probe reconnected and sent the run's retained state from the store
      await rec.waitFor(`${root}/lan/state`, (p) => (JSON.parse(p) as TargetState).run_id === id, 20_000);
      expect(cuts).toBe(1);
      until = Date.now() + 1500;
      while (Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      const events = rec.on(`${root}/lan/event`).map((m) => (JSON.parse(m.payload) as RunEvent).run_id);
      expect(events).toEqual([id]);
      expect(svc.store.unpublished()).toEqual([]);
      expect(svc.publisher()!.status().connected).toBe(true);
    } finally {
      await svc.close();
      await rec.close();
      front.close();
    }
  });

  it('a wrong broker password is a coded error and the probe keeps retrying with backoff', async () => {
    const svc = await startService(
      settings(tempDir(), { url: broker.url, username: BROKER_USER, password: 'wrong' }),
      log,
      fast,
    );
    try {
      const until = Date.now() + 10_000;
      while (svc.publisher()!.status().last_error?.code !== 'BP_ERR_MQTT_AUTH' && Date.now() < until)
        await new Promise((r) => setTimeout(r, 50));
      expect(svc.publisher()!.status().last_error?.code).toBe('BP_ERR_MQTT_AUTH');
      const seen = (broker.log.match(/not authori[sz]ed/gi) ?? []).length;
      await new Promise((r) => setTimeout(r, 1500));
      expect((broker.log.match(/not authori[sz]ed/gi) ?? []).length).toBeGreaterThan(seen);
      expect(svc.publisher()!.status().connected).toBe(false);
      // the service itself still works: a run is stored
      svc.runner.enqueue('lan', 'manual');
      const t = Date.now() + 15_000;
      while (!svc.store.counts().ok && Date.now() < t) await new Promise((r) => setTimeout(r, 50));
      expect(svc.store.counts().ok).toBe(1);
    } finally {
      await svc.close();
    }
  });

  it('mqtts:// verifies the broker certificate against mqtt.ca; without it the connection is refused', async () => {
    const tls = {
      url: `mqtts://127.0.0.1:${broker.tlsPort}`,
      username: BROKER_USER,
      password: BROKER_PASSWORD,
    };
    const good = await startService(settings(tempDir(), { ...tls, ca: tlsCreds.certPath }), log, fast);
    try {
      const rec = await Recorder.connect(broker.url, [`bandwidth_probe/${good.deviceId}/status`]);
      await rec.waitFor(`bandwidth_probe/${good.deviceId}/status`, (p) => p === 'online');
      await rec.close();
      expect(good.publisher()!.status().connected).toBe(true);
    } finally {
      await good.close();
    }
    const bad = await startService(settings(tempDir(), tls), log, fast);
    try {
      const until = Date.now() + 10_000;
      while (!bad.publisher()!.status().last_error && Date.now() < until)
        await new Promise((r) => setTimeout(r, 50));
      expect(bad.publisher()!.status().last_error?.code).toBe('BP_ERR_MQTT');
      expect(bad.publisher()!.status().last_error?.message).toMatch(/certificate/i);
      expect(bad.publisher()!.status().connected).toBe(false);
    } finally {
      await bad.close();
    }
  });

  it('reads the broker from the Supervisor (/services/mqtt with the bearer token)', async () => {
    const seen: string[] = [];
    const sup = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization}`);
      res.setHeader('content-type', 'application/json');
      if (req.url === '/addons/self/info') {
        res.end(JSON.stringify({ result: 'ok', data: { slug: 'a0d7b954_bandwidth_probe' } }));
        return;
      }
      res.end(
        JSON.stringify({
          result: 'ok',
          data: {
            host: '127.0.0.1',
            port: String(broker.port),
            ssl: false,
            protocol: '3.1.1',
            username: BROKER_USER,
            password: BROKER_PASSWORD,
            addon: 'core_mosquitto',
          },
        }),
      );
    });
    await new Promise<void>((r) => sup.listen(0, '127.0.0.1', r));
    const env = {
      SUPERVISOR_TOKEN: 'test-token',
      BANDWIDTH_PROBE_SUPERVISOR_URL: `http://127.0.0.1:${(sup.address() as AddressInfo).port}`,
    };
    const svc = await startService(settings(tempDir(), {}), log, { ...fast, env });
    try {
      // the add-on's own slug, for the device's link to its ingress panel; then the broker
      expect(seen).toEqual([
        'GET /addons/self/info Bearer test-token',
        'GET /services/mqtt Bearer test-token',
      ]);
      const disc = `homeassistant/device/${svc.deviceId}/config`;
      const rec = await Recorder.connect(broker.url, [`bandwidth_probe/${svc.deviceId}/status`, disc]);
      await rec.waitFor(`bandwidth_probe/${svc.deviceId}/status`, (p) => p === 'online');
      const d = JSON.parse((await rec.waitFor(disc, (p) => p.length > 0)).payload);
      expect(d.device.configuration_url).toBe('homeassistant://hassio/ingress/a0d7b954_bandwidth_probe');
      expect(d.origin.support_url).toMatch(/^https:\/\//);
      await rec.close();
    } finally {
      await svc.close();
      sup.close();
    }
  });
});

describe('hostile publishers on the broker', () => {
  /** A logger whose lines are kept, to measure what a flood costs the log. */
  const capture = () => {
    const lines: string[] = [];
    const dest = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n')) if (l) lines.push(l);
        cb();
      },
    });
    return { lines, log: createLogger('info', dest) };
  };

  it('5 × 20 MB run commands and 5000 for unknown targets: never logged whole, a few lines in all', async () => {
    const { lines, log: cap } = capture();
    const svc = await startService(settings(tempDir(), auth(), [TARGETS()[0]]), cap, fast);
    const root = `bandwidth_probe/${svc.deviceId}`;
    const rec = await Recorder.connect(broker.url, [`${root}/#`]);
    try {
      await rec.waitFor(`${root}/status`, (p) => p === 'online');
      const before = lines.join('\n').length;
      const huge = Buffer.alloc(20 * 1024 * 1024, 'x');
      for (let i = 0; i < 5; i++) await rec.client.publishAsync(`${root}/run`, huge, { qos: 1 });
      for (let i = 0; i < 5000; i++) rec.client.publish(`${root}/zz${i}/run`, 'RUN', { qos: 0 });
      await rec.client.publishAsync(`${root}/run`, 'nosuch', { qos: 1 });
      // a good command after the flood still runs the target
      await rec.client.publishAsync(`${root}/lan/run`, 'RUN', { qos: 1 });
      await rec.waitFor(`${root}/lan/event`, () => true, 30_000);
      const added = lines.join('\n').length - before;
      const bad = lines.filter((l) => /run command|run request refused/.test(l));
      expect(added).toBeLessThan(64 * 1024);
      expect(bad.length).toBeLessThanOrEqual(5);
      expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(4096);
      expect(
        lines.some((l) => l.includes('xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')),
      ).toBe(false);
      expect(bad[0]).toMatch(/"bytes":20971520/);
    } finally {
      await rec.close();
      await svc.close();
    }
  }, 90_000);

  it('a garbage or forged retained discovery config: publishing goes on, foreign topics are untouched', async () => {
    const dir = tempDir();
    let svc = await startService(settings(dir, auth(), [TARGETS()[0]]), log, fast);
    const id = svc.deviceId;
    const root = `bandwidth_probe/${id}`;
    const topic = `homeassistant/device/${id}/config`;
    const rec = await Recorder.connect(broker.url, [`${root}/#`, topic, 'victim/#']);
    try {
      await rec.waitFor(`${root}/status`, (p) => p === 'online');
      await svc.close();
      // someone who may write our discovery topic: a null component, and components that name foreign
      // topics (and one of ours under another device) as their state topics
      await rec.client.publishAsync('victim/keep', 'precious', { qos: 1, retain: true });
      const forged = {
        components: {
          zz: null,
          junk: 'text',
          forged: { p: 'sensor', stat_t: 'victim/keep' },
          forged2: { platform: 'sensor', state_topic: 'bandwidth_probe/other_device/lan/state' },
        },
      };
      for (const cfg of [
        JSON.stringify({ components: { zz: null } }),
        JSON.stringify(forged),
        '{not json',
        '[1,2]',
      ]) {
        await rec.client.publishAsync(topic, cfg, { qos: 1, retain: true });
        const from = rec.messages.length;
        svc = await startService(settings(dir, auth(), [TARGETS()[0]]), log, fast);
        // ours replaces it, and the target's state is published again
        const mine = await rec.waitFor(topic, (p) => p.includes('"lan_download"'), 10_000, from);
        expect(JSON.parse(mine.payload).components.lan_download).toBeTruthy();
        await rec.client.publishAsync(`${root}/lan/run`, 'RUN', { qos: 1 });
        await rec.waitFor(`${root}/lan/state`, (p) => p.includes('"status":"ok"'), 30_000, from);
        await svc.close();
      }
      expect(rec.on('victim/keep').map((m) => m.payload)).toEqual(['precious']);
      const late = await Recorder.connect(broker.url, ['victim/keep', 'bandwidth_probe/other_device/#']);
      await new Promise((r) => setTimeout(r, 300));
      expect(late.on('victim/keep').map((m) => m.payload)).toEqual(['precious']);
      expect(late.messages.filter((m) => m.topic.startsWith('bandwidth_probe/other_device'))).toEqual([]);
      await late.close();
    } finally {
      await rec.client.publishAsync('victim/keep', '', { qos: 1, retain: true });
      await rec.close();
      await svc.close();
    }
  }, 120_000);
});
