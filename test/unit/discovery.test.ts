import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/load.js';
import type { RunResult } from '../../src/measure/result.js';
import {
  discoveryPayload,
  expireAfter,
  parseRetainedDiscovery,
  removalPayload,
} from '../../src/mqtt/discovery.js';
import { LogBudget } from '../../src/mqtt/publisher.js';
import { runEvent, Topics, targetState } from '../../src/mqtt/topics.js';
import { ndt7Protocol } from '../../src/ndt7/protocol.js';

/**
 * Discovery builders (specs/ha-mqtt.md). Every key we send must be a key Home Assistant knows: the full
 * names in the abbreviation table (a copy in test/fixtures; where ../shared sits beside the repo, the
 * copy must equal it).
 */
const FIXTURE = join(import.meta.dirname, '../fixtures/ha-mqtt-abbreviations.json');
const SHARED = join(import.meta.dirname, '../../../shared/schemas/ha-mqtt-abbreviations.json');
const table = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {
  abbreviations: Record<string, string>;
  device_abbreviations: Record<string, string>;
  origin_abbreviations: Record<string, string>;
  added_after_snapshot: Record<string, string>;
  deprecated: Record<string, string>;
};
const entityKeys = new Set([
  ...Object.values(table.abbreviations),
  ...Object.values(table.added_after_snapshot),
  // qos has no abbreviation, so the table does not list it (mqtt.markdown defines it for every platform)
  'qos',
]);

const topics = new Topics('bandwidth_probe', 'bwprobe_0a1b2c3d', 'homeassistant');
const payload = discoveryPayload({
  topics,
  deviceName: 'Bandwidth Probe',
  version: '1.2.3',
  model: 'standalone',
  targets: [
    { id: 'isp', name: 'ISP', udp: false, expireAfter: 11100 },
    { id: 'router', name: 'Router', udp: true, expireAfter: 0 },
  ],
}) as Record<string, unknown> & { components: Record<string, Record<string, unknown>> };

describe('device discovery payload', () => {
  it('the fixture is the shared table', () => {
    // compared as data: the formatter may lay the copy out differently
    if (existsSync(SHARED)) expect(table).toEqual(JSON.parse(readFileSync(SHARED, 'utf8')));
    expect(Object.keys(table.abbreviations).length).toBeGreaterThan(200);
  });

  it('uses only keys Home Assistant knows; object_id only beside an equal default_entity_id', () => {
    const rootKeys = Object.keys(payload).filter((k) => k !== 'device' && k !== 'origin');
    for (const k of rootKeys) expect(entityKeys, `root key ${k}`).toContain(k);
    for (const k of Object.keys(payload.device as object))
      expect(Object.values(table.device_abbreviations), `device key ${k}`).toContain(k);
    for (const k of Object.keys(payload.origin as object))
      expect(Object.values(table.origin_abbreviations), `origin key ${k}`).toContain(k);
    for (const [id, c] of Object.entries(payload.components)) {
      for (const k of Object.keys(c)) {
        expect(entityKeys, `${id}.${k}`).toContain(k);
        // object_id is deprecated (HA 2025.10) but is what HA 2024.12–2025.9 read for the entity id; HA
        // ≥ 2025.10 prefers default_entity_id and logs nothing when both are there (core#151996).
        if (k !== 'object_id') expect(Object.keys(table.deprecated)).not.toContain(k);
      }
      expect(c.default_entity_id, id).toBe(`${c.platform}.${c.object_id}`);
    }
    expect(JSON.stringify(payload)).not.toMatch(/"obj_id"/);
  });

  it('names and entity ids as Home Assistant composes them, on HA before and after 2025.10', () => {
    const p = discoveryPayload({
      topics,
      deviceName: 'Bandwidth Probe',
      version: '1.2.3',
      model: 'standalone',
      targets: [
        { id: 'isp', name: 'ISP', udp: false, expireAfter: 11100 },
        { id: 'router', name: 'Router', ping: false, jitter: false, udp: false, expireAfter: 0 },
        { id: 'router_udp', name: 'Router UDP', ping: false, udp: true, expireAfter: 0 },
        { id: 'lab', name: 'Lab server', udp: false, expireAfter: 0 },
      ],
    }) as { components: Record<string, Record<string, string>> };
    // HA < 2025.10: entity id = <platform>.<object_id>; ≥ 2025.10: default_entity_id. The friendly name
    // is "<device name> <entity name>" (has_entity_name). Every id is the one DOCS shows.
    const seen = Object.values(p.components).map((c) => ({
      old: `${c.platform}.${c.object_id}`,
      now: c.default_entity_id,
      friendly: `Bandwidth Probe ${c.name}`,
    }));
    for (const x of seen) {
      expect(x.old).toBe(x.now);
      expect(x.now).toMatch(/^(sensor|binary_sensor|button|event)\.bwprobe_0a1b2c3d_[a-z0-9_]+$/);
      // no word twice in a row ("Router UDP UDP loss", "Lab server server")
      expect(x.friendly, x.friendly).not.toMatch(/\b(\w+) \1\b/i);
    }
    const ids = seen.map((x) => x.now);
    expect(ids).toContain('sensor.bwprobe_0a1b2c3d_isp_download');
    expect(ids).toContain('binary_sensor.bwprobe_0a1b2c3d_isp_below_threshold');
    expect(ids).toContain('button.bwprobe_0a1b2c3d_isp_run');
    expect(ids).toContain('event.bwprobe_0a1b2c3d_isp_run');
    expect(ids).toContain('button.bwprobe_0a1b2c3d_run_all');
    expect(p.components.router_udp_loss!.name).toBe('Router UDP loss');
    expect(p.components.lab_server!.name).toBe('Lab server');
    // btest measures no ping; btest TCP no jitter either: no entity that stays unknown forever
    expect(p.components.router_ping).toBeUndefined();
    expect(p.components.router_jitter).toBeUndefined();
    expect(p.components.router_udp_ping).toBeUndefined();
    expect(p.components.router_udp_jitter).toBeDefined();
    expect(p.components.isp_ping).toBeDefined();
    // every component carries qos itself (older HA did not inherit it from the root)
    for (const c of Object.values(p.components)) expect(c.qos).toBe(1);
  });

  it('builds the exact components of a target', () => {
    expect(payload.device).toEqual({
      identifiers: ['bwprobe_0a1b2c3d'],
      name: 'Bandwidth Probe',
      manufacturer: 'Bandwidth Probe',
      model: 'standalone',
      sw_version: '1.2.3',
    });
    expect(payload.origin).toEqual({ name: 'bandwidth-probe', sw_version: '1.2.3' });
    expect(payload.availability_topic).toBe('bandwidth_probe/bwprobe_0a1b2c3d/status');
    expect(payload.qos).toBe(1);
    expect(payload.components.isp_download).toEqual({
      platform: 'sensor',
      unique_id: 'bwprobe_0a1b2c3d_isp_download',
      default_entity_id: 'sensor.bwprobe_0a1b2c3d_isp_download',
      object_id: 'bwprobe_0a1b2c3d_isp_download',
      qos: 1,
      name: 'ISP download',
      state_topic: 'bandwidth_probe/bwprobe_0a1b2c3d/isp/state',
      value_template: '{{ value_json.download_mbps }}',
      device_class: 'data_rate',
      unit_of_measurement: 'Mbit/s',
      state_class: 'measurement',
      suggested_display_precision: 1,
      icon: 'mdi:download-network',
      expire_after: 11100,
    });
    // the device links to the status page when one is known
    const linked = discoveryPayload({
      topics,
      deviceName: 'Bandwidth Probe',
      version: '1.2.3',
      model: 'Home Assistant add-on',
      supportUrl: 'https://example.org/issues',
      configurationUrl: 'homeassistant://hassio/ingress/abc_bandwidth_probe',
      targets: [],
    }) as { device: Record<string, unknown>; origin: Record<string, unknown> };
    expect(linked.device.configuration_url).toBe('homeassistant://hassio/ingress/abc_bandwidth_probe');
    expect(linked.origin.support_url).toBe('https://example.org/issues');
    expect(payload.components.isp_ping).toMatchObject({
      device_class: 'duration',
      unit_of_measurement: 'ms',
    });
    expect(payload.components.isp_jitter).toMatchObject({
      device_class: 'duration',
      unit_of_measurement: 'ms',
    });
    expect(payload.components.isp_last_run).toMatchObject({
      device_class: 'timestamp',
      entity_category: 'diagnostic',
    });
    expect(payload.components.isp_running).toMatchObject({
      platform: 'binary_sensor',
      device_class: 'running',
      state_topic: 'bandwidth_probe/bwprobe_0a1b2c3d/isp/running',
      entity_category: 'diagnostic',
    });
    expect(payload.components.isp_below_threshold).toMatchObject({
      platform: 'binary_sensor',
      device_class: 'problem',
      expire_after: 11100,
    });
    expect(payload.components.isp_run).toEqual({
      platform: 'button',
      unique_id: 'bwprobe_0a1b2c3d_isp_run',
      default_entity_id: 'button.bwprobe_0a1b2c3d_isp_run',
      object_id: 'bwprobe_0a1b2c3d_isp_run',
      qos: 1,
      name: 'ISP run now',
      command_topic: 'bandwidth_probe/bwprobe_0a1b2c3d/isp/run',
      payload_press: 'RUN',
      icon: 'mdi:play-speed',
    });
    expect(payload.components.isp_event).toMatchObject({
      platform: 'event',
      state_topic: 'bandwidth_probe/bwprobe_0a1b2c3d/isp/event',
      event_types: ['completed', 'failed', 'aborted', 'skipped'],
    });
    expect(payload.components.isp_loss).toBeUndefined();
    expect(payload.components.router_loss).toMatchObject({
      unit_of_measurement: '%',
      state_class: 'measurement',
    });
    expect(payload.components.router_loss!.device_class).toBeUndefined();
    // a disabled target (expire 0) never expires
    expect(payload.components.router_download!.expire_after).toBeUndefined();
    // unique ids are unique
    const ids = Object.values(payload.components).map((c) => c.unique_id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('removes vanished components by reducing them to their platform first', () => {
    const smaller = discoveryPayload({
      topics,
      deviceName: 'Bandwidth Probe',
      version: '1.2.3',
      model: 'standalone',
      targets: [{ id: 'isp', name: 'ISP', udp: false, expireAfter: 11100 }],
    });
    const r = removalPayload(payload, smaller) as { components: Record<string, unknown> };
    expect(r.components.router_download).toEqual({ platform: 'sensor' });
    expect(r.components.router_running).toEqual({ platform: 'binary_sensor' });
    expect(r.components.isp_download).toEqual(payload.components.isp_download);
    expect(removalPayload(smaller, smaller)).toBeUndefined();
    expect(removalPayload(undefined, smaller)).toBeUndefined();
  });

  it('expire_after is three periods plus the run budget', () => {
    expect(expireAfter(3600, 300)).toBe(11100);
    expect(expireAfter(0, 300)).toBe(0);
    expect(expireAfter(Number.POSITIVE_INFINITY, 300)).toBe(0);
  });

  it('command topics map to targets', () => {
    expect(topics.commandTarget('bandwidth_probe/bwprobe_0a1b2c3d/run')).toBe('all');
    expect(topics.commandTarget('bandwidth_probe/bwprobe_0a1b2c3d/isp/run')).toBe('isp');
    expect(topics.commandTarget('bandwidth_probe/bwprobe_0a1b2c3d/isp/state')).toBeUndefined();
    expect(topics.commandTarget('other/bwprobe_0a1b2c3d/isp/run')).toBeUndefined();
  });
});

describe('state and event payloads', () => {
  const base: RunResult = {
    target: { id: 'isp', kind: 'rmbt' },
    server: { host: 'example.net', port: 443, name: 'Vienna' },
    started_at: '2026-11-21T10:00:00.000Z',
    finished_at: '2026-11-21T10:00:20.000Z',
    status: 'ok',
    engine: 'native',
    cpu: {},
    flags: ['below_threshold'],
    download: {
      mbps: 93.1,
      bytes: 1,
      bytes_total: 1,
      duration_ms: 1,
      streams: 3,
      timing: 'client',
      series: [],
      per_stream: [],
    },
  };

  it('an ok run: figures, threshold ON, run id', () => {
    const s = targetState(base, 7);
    expect(s).toMatchObject({
      status: 'ok',
      download_mbps: 93.1,
      upload_mbps: null,
      below_threshold: 'ON',
      run_id: 7,
      server: 'Vienna',
    });
    // the event's attribute is a boolean an automation can test as is
    expect(runEvent(base, 7)).toMatchObject({
      event_type: 'completed',
      target: 'isp',
      run_id: 7,
      below_threshold: true,
    });
    expect(runEvent({ ...base, flags: [] }, 7).below_threshold).toBe(false);
  });

  it('the server sensor: a name, host:port, or the host of a control URL (never "…:0")', () => {
    expect(targetState(base, 1).server).toBe('Vienna');
    const at = (server: RunResult['server']) => targetState({ ...base, server }, 1).server;
    expect(at({ host: 'example.net', port: 443 })).toBe('example.net:443');
    expect(at({ host: '2001:db8::1', port: 8081 })).toBe('[2001:db8::1]:8081');
    expect(at({ host: 'http://127.0.0.1:9/RMBTControlServer', port: 0 })).toBe('127.0.0.1:9');
    expect(at({ host: 'https://c01.netztest.at/RMBTControlServer', port: 0 })).toBe('c01.netztest.at');
    expect(at({ host: 'router.lan', port: 0 })).toBe('router.lan');
  });

  it('a failed run publishes null figures (HA: unknown, not 0) and its error code', () => {
    const failed: RunResult = {
      ...base,
      status: 'failed',
      flags: [],
      error: { code: 'BP_ERR_CONNECT', message: 'refused' },
    };
    const s = targetState(failed, 8);
    expect(s.download_mbps).toBeNull();
    expect(s.below_threshold).toBeNull();
    expect(runEvent(failed, 8).below_threshold).toBeNull();
    expect(s.error_code).toBe('BP_ERR_CONNECT');
    expect(runEvent(failed, 8).event_type).toBe('failed');
    expect(runEvent({ ...failed, status: 'aborted' }, 9).event_type).toBe('aborted');
  });
});

describe('untrusted broker input', () => {
  it('a retained discovery copy keeps only well-formed components; garbage is no previous config', () => {
    for (const bad of [undefined, '', '{not json', '[1]', 'null', '"x"', '{"components":3}', '{"cmps":[1]}'])
      expect(parseRetainedDiscovery(bad), String(bad)).toBeUndefined();
    expect(parseRetainedDiscovery('{"components":{"zz":null,"a":{"p":"sensor"},"b":"x","c":[1]}}')).toEqual({
      components: { a: { p: 'sensor' } },
    });
    expect(parseRetainedDiscovery('{"cmps":{"a":{"p":"button"}}}')).toEqual({
      components: { a: { p: 'button' } },
    });
    // and what survives never makes the removal throw
    const next = { components: { kept: { platform: 'sensor' } } };
    expect(removalPayload(parseRetainedDiscovery('{"components":{"zz":null,"old":{}}}'), next)).toEqual({
      components: { kept: { platform: 'sensor' }, old: { platform: 'sensor' } },
    });
  });

  it('the bad-command log budget: 5 lines a window, then a count of what was dropped', () => {
    const b = new LogBudget(5, 60_000);
    const got = Array.from({ length: 100 }, (_, i) => b.take(1000 + i).log);
    expect(got.filter(Boolean)).toHaveLength(5);
    expect(b.take(61_000 + 1000)).toEqual({ log: true, suppressed: 95 });
    expect(b.take(61_000 + 1001)).toEqual({ log: true, suppressed: 0 });
  });
});

describe('latency entities', () => {
  const comps = (latency?: readonly ('download' | 'upload' | 'both')[]) =>
    Object.keys(
      (
        discoveryPayload({
          topics,
          deviceName: 'Bandwidth Probe',
          version: '1',
          model: 'standalone',
          targets: [{ id: 't', name: 'T', udp: false, expireAfter: 600, ...(latency ? { latency } : {}) }],
        }) as { components: Record<string, unknown> }
      ).components,
    ).filter((k) => /latency|responsiveness|grade/.test(k));

  it('an RMBT target has both loaded latencies, the responsiveness and the grade', () => {
    expect(comps().sort()).toEqual([
      't_bufferbloat_grade',
      't_download_latency',
      't_responsiveness',
      't_upload_latency',
    ]);
  });
  it('btest has the direction it loads; both ways has no per-direction latency; off has none', () => {
    expect(comps(['download']).sort()).toEqual([
      't_bufferbloat_grade',
      't_download_latency',
      't_responsiveness',
    ]);
    expect(comps(['both']).sort()).toEqual(['t_bufferbloat_grade', 't_responsiveness']);
    expect(comps([])).toEqual([]);
  });
  it('the grade is an enum of the six grades with the same expiry as the figures, no unit', () => {
    const c = (payload.components as Record<string, Record<string, unknown>>).isp_bufferbloat_grade!;
    expect(c).toMatchObject({
      device_class: 'enum',
      options: ['A+', 'A', 'B', 'C', 'D', 'F'],
      expire_after: 11100,
    });
    expect(c.unit_of_measurement).toBeUndefined();
    expect(c.state_class).toBeUndefined();
  });
  it("a failed run's latency figures are null", () => {
    const st = targetState(
      {
        target: { id: 't', kind: 'rmbt' },
        server: { host: 'h', port: 1 },
        started_at: 'a',
        finished_at: 'b',
        status: 'failed',
        engine: 'js',
        cpu: {},
        flags: [],
        latency: { responsiveness_rpm: 900, grade: 'C' },
      } as RunResult,
      1,
    );
    expect(st).toMatchObject({
      download_latency_ms: null,
      responsiveness_rpm: null,
      bufferbloat_grade: null,
    });
  });

  it('our servers on: one "inbound" target with known keys, no expiry, no button; UDP loss with btest', () => {
    const withInbound = (udp: boolean) =>
      discoveryPayload({
        topics,
        deviceName: 'Bandwidth Probe',
        version: '1.2.3',
        model: 'standalone',
        targets: [{ id: 'isp', name: 'ISP', udp: false, expireAfter: 11100 }],
        inbound: { udp },
      }) as { components: Record<string, Record<string, unknown>> };
    const c = withInbound(true).components;
    const mine = Object.keys(c).filter((k) => k.startsWith('inbound_'));
    expect(mine.sort()).toEqual(
      [
        'inbound_download',
        'inbound_event',
        'inbound_last_run',
        'inbound_loss',
        'inbound_peer',
        'inbound_upload',
      ].sort(),
    );
    for (const k of mine) {
      for (const key of Object.keys(c[k]!)) expect(entityKeys, `${k}.${key}`).toContain(key);
      expect(c[k]!.expire_after, k).toBeUndefined();
      expect(c[k]!.default_entity_id).toBe(`${c[k]!.platform}.${c[k]!.object_id}`);
    }
    expect(c.inbound_download).toMatchObject({
      state_topic: 'bandwidth_probe/bwprobe_0a1b2c3d/inbound/state',
      device_class: 'data_rate',
      default_entity_id: 'sensor.bwprobe_0a1b2c3d_inbound_download',
    });
    expect(c.inbound_event).toMatchObject({
      platform: 'event',
      state_topic: 'bandwidth_probe/bwprobe_0a1b2c3d/inbound/event',
    });
    expect(withInbound(false).components.inbound_loss).toBeUndefined();
    expect(payload.components.inbound_download).toBeUndefined();
    // the state of an inbound run: the peer (IPv6 in brackets) and how it tested
    const st = targetState(
      {
        target: { id: 'inbound', kind: 'btest-server' },
        server: { host: '2001:db8::7', port: 40000 },
        started_at: 'a',
        finished_at: 'b',
        status: 'ok',
        engine: 'native',
        cpu: {},
        flags: [],
        download: { mbps: 93.5 } as RunResult['download'],
        inbound: {
          peer: '2001:db8::7',
          peer_port: 40000,
          local_port: 2000,
          user: 'btest',
          protocol: 'tcp',
          direction: 'receive',
          connections: 1,
          bytes_sent: 1000,
          bytes_received: 0,
          duration_ms: 1000,
          end: 'done',
        },
      } as RunResult,
      7,
    );
    expect(st.download_mbps).toBe(93.5);
    expect(st.inbound).toEqual({
      kind: 'btest-server',
      peer: '[2001:db8::7]',
      protocol: 'tcp',
      direction: 'receive',
      user: 'btest',
      bytes_sent: 1000,
      bytes_received: 0,
      lost_packets: null,
    });
  });
});

describe("a protocol's own figures (ndt7)", () => {
  const ndt7 = ndt7Protocol.measures(loadSettings().ndt7);
  const p = discoveryPayload({
    topics,
    deviceName: 'Bandwidth Probe',
    version: '1.2.3',
    model: 'standalone',
    targets: [
      {
        id: 'mlab',
        name: 'Internet',
        ping: ndt7.ping,
        jitter: ndt7.jitter,
        udp: ndt7.loss,
        latency: ndt7.latency,
        figures: ndt7.figures!,
        expireAfter: 0,
      },
    ],
  }) as { components: Record<string, Record<string, unknown>> };

  it('ping and latency entities, no jitter or loss; retransmissions and the server location as sensors', () => {
    const c = p.components;
    expect(c.mlab_ping).toBeDefined();
    expect(c.mlab_download_latency).toBeDefined();
    expect(c.mlab_jitter).toBeUndefined();
    expect(c.mlab_loss).toBeUndefined();
    expect(c.mlab_retransmissions).toMatchObject({
      unit_of_measurement: '%',
      state_class: 'measurement',
      value_template: "{{ (value_json.figures or {}).get('retransmissions') }}",
    });
    expect(c.mlab_server_location).toMatchObject({ entity_category: 'diagnostic' });
    expect(c.mlab_server_location!.unit_of_measurement).toBeUndefined();
    for (const comp of Object.values(c))
      for (const k of Object.keys(comp)) expect(entityKeys, k).toContain(k);
  });

  const r = {
    target: { id: 'mlab', kind: 'ndt7' },
    server: { host: 'ndt.example', port: 443 },
    started_at: '2026-01-01T00:00:00Z',
    finished_at: '2026-01-01T00:00:21Z',
    status: 'ok',
    engine: 'js',
    cpu: {},
    flags: [],
    figures: { retransmissions: 0.42, server_location: 'mlab1-lo01 (Loopback, ZZ)' },
  } as RunResult;

  it('the state carries the figures of an ok run only', () => {
    expect(targetState(r, 1).figures).toEqual({
      retransmissions: 0.42,
      server_location: 'mlab1-lo01 (Loopback, ZZ)',
    });
    expect(targetState({ ...r, status: 'failed' }, 2).figures).toBeUndefined();
  });

  it('a skipped run says skipped and keeps the last measurement figures', () => {
    const ok = { ...r, download: { ...r, mbps: 88 } } as unknown as RunResult;
    const skipped = {
      ...r,
      status: 'skipped',
      error: { code: 'BP_ERR_NDT7_BUSY', message: 'busy' },
      figures: undefined,
    } as unknown as RunResult;
    const s = targetState(skipped, 3, ok);
    expect(s).toMatchObject({ status: 'skipped', download_mbps: 88, error_code: 'BP_ERR_NDT7_BUSY' });
    expect(s.figures).toEqual(r.figures);
    expect(runEvent(skipped, 3).event_type).toBe('skipped');
    // without a measurement before it: no figures
    expect(targetState(skipped, 3).download_mbps).toBeNull();
  });
});
