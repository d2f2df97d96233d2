import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BtestServer } from '../../src/btest/server.js';
import { loadSettings } from '../../src/config/load.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { createLogger } from '../../src/log.js';
import { type Service, startService } from '../../src/main.js';
import type { RunningRmbtServers } from '../../src/rmbt/serve.js';
import { startBtestServer } from '../helpers/btest.js';
import { BROKER_PASSWORD, BROKER_USER, Mosquitto, Recorder } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/proc.js';
import { startServers, tempDir } from '../helpers/rmbt.js';

/**
 * What the outside world sees of the probe, recorded once and compared on every run: the MQTT discovery
 * payloads and retained states, the API's status and run answers, the CSV headers, the metric names and
 * every --help text, from a loopback `serve` with an RMBT and a btest target and both servers on.
 * Figures, times, ports and paths are masked; names, keys, units and structure are not. A change here is
 * a change users see (HA entities, scripts reading the API or CSV): update the golden files on purpose
 * only, with `UPDATE_GOLDEN=1` (then `npx biome format --write test/golden`).
 */
const GOLDEN = join(import.meta.dirname, '../golden');
const CLI = join(import.meta.dirname, '../../dist/cli.js');
const log = createLogger('silent');
const run = promisify(execFile);

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

/** Masks what differs from run to run; keeps every key and every string that is not a time or path. */
function mask(v: unknown, key = '', numbers = true): unknown {
  if (typeof v === 'number') return numbers ? '<n>' : v;
  if (typeof v === 'string') {
    if (ISO.test(v)) return '<time>';
    // a grade from figures (A+ on an idle loopback, A beside another test)
    if (key.endsWith('grade')) return '<grade>';
    return v
      .replace(/\/tmp\/[^\s"']+/g, '<path>')
      .replace(UUID, '<uuid>')
      .replace(/(127\.0\.0\.1|localhost|\]):\d{2,5}/g, '$1:<port>');
  }
  if (Array.isArray(v)) {
    // per-second series, samples and the flags a loaded machine may add vary in length
    if (['series', 'samples', 'points', 'flags', 'streams', 'rtts_ms'].includes(key)) return '<list>';
    if (v.every((x) => typeof x === 'number' || Array.isArray(x))) return '<list>';
    return v.map((x) => mask(x, '', numbers));
  }
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) o[k] = mask((v as Record<string, unknown>)[k], k, numbers);
    return o;
  }
  return v;
}

function compare(name: string, actual: unknown): void {
  const file = join(GOLDEN, `${name}.json`);
  const text = `${JSON.stringify(actual, null, 2)}\n`;
  if (process.env.UPDATE_GOLDEN) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, text);
    return;
  }
  expect(JSON.parse(text)).toEqual(JSON.parse(readFileSync(file, 'utf8')));
}

let broker: Mosquitto;
let btest: BtestServer;
let rmbt: RunningRmbtServers;
let svc: Service;
let rec: Recorder;
let dataDir: string;

beforeAll(async () => {
  broker = new Mosquitto();
  await broker.start();
  const engine = new JsEngine();
  btest = await startBtestServer(engine, { auth: 'none' });
  rmbt = (await startServers(engine)).servers;
  dataDir = tempDir();
  // a fixed device id: discovery topics and unique_ids carry it
  writeFileSync(join(dataDir, 'install-id'), '0123abcd\n');
  const udp = 20_000 + ((await freePort()) % 30_000);
  const s = loadSettings({
    flags: {
      general: { data_dir: dataDir, log_level: 'silent', engine: 'js' },
      service: { busy_check: 'off', run_on_start: 'false' },
      web: { bind: '127.0.0.1', port: '0' },
      mqtt: { url: broker.url, username: BROKER_USER, password: BROKER_PASSWORD },
      btest_server: { enabled: 'true', bind: '127.0.0.1', auth: 'none', udp_port_start: String(udp) },
      rmbt_server: { enabled: 'true', bind: '127.0.0.1', test_duration: '1', test_pings: '3' },
    },
    env: {
      BANDWIDTH_PROBE_TARGETS: JSON.stringify([
        {
          id: 'isp',
          name: 'ISP line',
          type: 'rmbt',
          control_url: `http://127.0.0.1:${rmbt.control!.port}/RMBTControlServer`,
          tls_ca: rmbt.certPath,
          accept_terms: true,
          submit_results: false,
          duration: 1,
          pretest_duration: 0.2,
          ping_duration: 0.1,
          pings: 3,
          interval: 1440,
          threshold_download: 5,
        },
        {
          id: 'router',
          type: 'btest',
          host: `127.0.0.1:${btest.port}`,
          duration: 1,
          loaded_latency: true,
          interval: 1440,
        },
        {
          id: 'router_udp',
          type: 'btest',
          host: `127.0.0.1:${btest.port}`,
          protocol: 'udp',
          direction: 'receive',
          duration: 1,
          interval: 1440,
          enabled: false,
        },
      ]),
    },
  });
  rec = await Recorder.connect(broker.url, ['homeassistant/#', 'bandwidth_probe/#']);
  svc = await startService(s, log, {
    version: 'golden',
    birthDelayMs: [20, 50],
    backoffMs: [100, 400],
    ephemeralServerPorts: true,
  });
  const done = new Promise<void>((resolve) => {
    const want = new Set(['isp', 'router']);
    svc.runner.on((e) => {
      if (e.type === 'finished') want.delete(e.target);
      if (!want.size) resolve();
    });
  });
  svc.runner.enqueue('isp', 'manual');
  svc.runner.enqueue('router', 'manual');
  await done;
  // the retained states of both runs
  const dev = svc.deviceId;
  await rec.waitFor(`bandwidth_probe/${dev}/isp/state`, (p) => p.includes('run_id'));
  await rec.waitFor(`bandwidth_probe/${dev}/router/state`, (p) => p.includes('run_id'));
}, 60_000);

afterAll(async () => {
  await rec?.close();
  await svc?.close();
  await btest?.close();
  await rmbt?.close();
  await broker?.stop();
});

async function get(path: string): Promise<{ type: string; body: string }> {
  const r = await fetch(`http://127.0.0.1:${svc.webPort}${path}`);
  expect(r.status, path).toBe(200);
  return { type: r.headers.get('content-type') ?? '', body: await r.text() };
}

describe('golden: what users and Home Assistant see', () => {
  it('MQTT discovery payloads and retained config', () => {
    const latest = new Map<string, string>();
    for (const m of rec.messages) if (m.topic.endsWith('/config')) latest.set(m.topic, m.payload);
    const out: Record<string, unknown> = {};
    for (const [topic, payload] of [...latest].sort())
      out[topic] = payload ? mask(JSON.parse(payload), '', false) : '';
    expect(Object.keys(out).length).toBeGreaterThan(0);
    compare('discovery', out);
  });

  it('MQTT state and event payloads', () => {
    const dev = svc.deviceId;
    const out: Record<string, unknown> = {};
    for (const t of ['isp', 'router']) {
      out[`${t}/state`] = mask(JSON.parse(rec.last(`bandwidth_probe/${dev}/${t}/state`)!.payload));
      const ev = rec.last(`bandwidth_probe/${dev}/${t}/event`);
      out[`${t}/event`] = ev ? mask(JSON.parse(ev.payload)) : null;
    }
    const topics = [...new Set(rec.messages.map((m) => m.topic.replace(dev, '<device>')))].sort();
    out.topics = topics;
    compare('mqtt-state', out);
  });

  it('API answers: status, runs, a run detail', async () => {
    const status = JSON.parse((await get('/api/status')).body);
    const runs = JSON.parse((await get('/api/runs?scope=measured')).body) as {
      runs: { id: number; target: string }[];
    };
    const out: Record<string, unknown> = { status: mask(status), runs: mask(runs) };
    for (const t of ['isp', 'router']) {
      const id = runs.runs.find((r) => r.target === t)!.id;
      out[`run:${t}`] = mask(JSON.parse((await get(`/api/runs/${id}`)).body));
    }
    compare('api', out);
  });

  it('CSV headers and metric names', async () => {
    const csv = (await get('/api/export.csv?scope=measured')).body.split('\n')[0];
    const served = (await get('/api/export.csv?scope=inbound')).body.split('\n')[0];
    const metrics = (await get('/metrics')).body
      .split('\n')
      .filter((l) => l.startsWith('# TYPE ') || l.startsWith('# HELP '))
      .sort();
    compare('exports', { csv, served, metrics });
  });

  it('--help texts', async () => {
    const commands = [
      [],
      ['serve'],
      ['demo'],
      ['measure', 'rmbt'],
      ['measure', 'btest'],
      ['load', 'btest'],
      ['load', 'rmbt'],
      ['checkpoint'],
      ['server', 'btest'],
      ['server', 'rmbt'],
    ];
    const out: Record<string, string> = {};
    for (const c of commands) {
      const r = await run(process.execPath, [CLI, ...c, '--help'], { timeout: 20_000 });
      out[c.join(' ') || '(top)'] = r.stdout + r.stderr;
    }
    compare('help', out);
  });
});
