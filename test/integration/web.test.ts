import { readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BtestServer } from '../../src/btest/server.js';
import { loadSettings } from '../../src/config/load.js';
import type { WebSettings } from '../../src/config/schema.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { Runner } from '../../src/runner/runner.js';
import { Scheduler } from '../../src/runner/schedule.js';
import { toCsv } from '../../src/store/csv.js';
import { Store } from '../../src/store/store.js';
import { buildApp } from '../../src/web/app.js';
import { tempDir } from '../helpers/rmbt.js';

/** Routes through fastify.inject(), SSE over a real socket; runs against our btest server on loopback. */
let btest: BtestServer;
const engine = new JsEngine();

beforeAll(async () => {
  btest = new BtestServer({
    host: '127.0.0.1',
    port: 0,
    udpPortStart: 37000,
    auth: 'none',
    user: 'x',
    maxSessions: 4,
    maxDurationS: 60,
    maxBytes: 0,
    handshakeTimeoutMs: 2000,
    engine,
  });
  await btest.start();
});
afterAll(() => btest.close());

async function makeApp(web: Record<string, string> = {}, ingress = false) {
  const s = loadSettings({
    flags: { general: { data_dir: tempDir(), log_level: 'silent' }, service: { busy_check: 'off' }, web },
    env: {
      BANDWIDTH_PROBE_TARGETS: JSON.stringify([
        {
          id: 'a',
          name: 'Alpha',
          type: 'btest',
          host: `127.0.0.1:${btest.port}`,
          duration: 2,
          threshold_download: 1e6,
        },
        { id: 'b', type: 'btest', host: `127.0.0.1:${btest.port}`, duration: 1, enabled: false },
      ]),
    },
  });
  const store = Store.open(s.general.data_dir);
  const runner = new Runner({ targets: s.targets, general: s.general, service: s.service, engine, store });
  const scheduler = new Scheduler(s.targets, () => {});
  scheduler.start();
  const app = await buildApp({
    runner,
    scheduler,
    store,
    targets: s.targets,
    deviceId: 'bwprobe_test',
    version: '9.9.9',
    engine: 'js',
    mqtt: () => undefined,
    settings: s.web as WebSettings,
    ingress,
  });
  const finished = () =>
    new Promise<number>((resolve) => {
      const off = runner.on((e) => {
        if (e.type === 'finished') {
          off();
          resolve(e.run_id!);
        }
      });
    });
  const close = async () => {
    scheduler.stop();
    await runner.stop();
    await app.close();
    store.close();
  };
  return { app, store, runner, finished, close };
}

describe('web routes', () => {
  let h: Awaited<ReturnType<typeof makeApp>>;
  let app: FastifyInstance;
  beforeAll(async () => {
    h = await makeApp({ run_limit: '4' });
    app = h.app;
  });
  afterAll(() => h.close());

  it('serves the page with relative URLs; standalone, X-Ingress-Path is ignored', async () => {
    const plain = await app.inject({ url: '/' });
    expect(plain.statusCode).toBe(200);
    expect(plain.headers['content-type']).toMatch(/text\/html/);
    expect(plain.body).toContain('<base href="./">');
    expect(plain.body).not.toMatch(/(src|href)="\/[^/]/); // no absolute paths
    // not behind ingress: nobody may pin our base URL, not even to the Supervisor's form
    const ingress = await app.inject({
      url: '/',
      headers: { 'x-ingress-path': '/api/hassio_ingress/AbC123' },
    });
    expect(ingress.body).toContain('<base href="./">');
    for (const f of ['app.js', 'app.css', 'uplot.js', 'uplot.css', 'icon.svg']) {
      expect((await app.inject({ url: `/${f}` })).statusCode, f).toBe(200);
    }
  });

  it('api/status lists the targets with schedule, thresholds and their last run', async () => {
    const r = await app.inject({ url: '/api/status' });
    expect(r.statusCode).toBe(200);
    const s = r.json();
    expect(s).toMatchObject({
      version: '9.9.9',
      device_id: 'bwprobe_test',
      engine: 'js',
      mqtt: null,
      running: null,
    });
    expect(s.targets.map((t: { id: string }) => t.id)).toEqual(['a', 'b']);
    expect(s.targets[0]).toMatchObject({ name: 'Alpha', schedule: 'every 60 min', last: null });
    expect(s.targets[0].thresholds.download_mbps).toBe(1e6);
    expect(Date.parse(s.targets[0].next_run)).toBeGreaterThan(Date.now());
    expect(s.targets[1].next_run).toBeNull();
  });

  it('POST api/run queues a run; the result shows in api/runs, api/runs/:id, exports and metrics', async () => {
    const done = h.finished();
    const r = await app.inject({ method: 'POST', url: '/api/run', payload: { target: 'a' } });
    expect(r.statusCode).toBe(202);
    // nothing else runs: it starts at once, and is not reported as queued
    expect(r.json()).toMatchObject({ started: 'a', queued: [], already: [] });
    expect(r.json().running.target).toBe('a');
    // asked again while it runs: nothing new is queued
    const again = await app.inject({ method: 'POST', url: '/api/run', payload: { target: 'a' } });
    expect(again.json()).toMatchObject({ started: null, queued: [], already: ['a'] });
    const id = await done;
    const runs = (await app.inject({ url: '/api/runs?target=a&limit=5' })).json().runs;
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ id, target: 'a', status: 'ok' });
    expect(runs[0].flags).toContain('below_threshold');
    expect(runs[0].download_mbps).toBeGreaterThan(0);
    const one = await app.inject({ url: `/api/runs/${id}` });
    expect(one.json()).toMatchObject({ id, status: 'ok', target: { id: 'a', kind: 'btest' } });
    expect(one.json().download.series.length).toBeGreaterThan(0);
    const csv = await app.inject({ url: '/api/export.csv?target=a' });
    expect(csv.headers['content-type']).toMatch(/text\/csv/);
    expect(csv.headers['content-disposition']).toMatch(/attachment/);
    const lines = csv.body.trim().split('\r\n');
    expect(lines[0]).toBe(
      'id,target,kind,started_at,finished_at,status,download_mbps,upload_mbps,ping_ms,jitter_ms,loss_percent,download_latency_ms,upload_latency_ms,responsiveness_rpm,bufferbloat_grade,flags,error_code,error,server,engine,trigger',
    );
    expect(lines[1]).toMatch(new RegExp(`^${id},a,btest,`));
    const json = await app.inject({ url: '/api/export.json' });
    expect(json.json().runs[0].id).toBe(id);
    const m = await app.inject({ url: '/metrics' });
    expect(m.headers['content-type']).toMatch(/text\/plain/);
    // Prometheus conventions: base units, _total counters, no label that changes with every run
    expect(m.body).toMatch(/bandwidth_probe_download_bits_per_second\{target="a"\} \d{4,}/);
    expect(m.body).toContain('# TYPE bandwidth_probe_runs_total counter');
    expect(m.body).toContain('bandwidth_probe_runs_total{target="a",status="ok"} 1');
    expect(m.body).toContain('bandwidth_probe_history_runs{target="a",status="ok"} 1');
    expect(m.body).toMatch(/bandwidth_probe_last_run_timestamp_seconds\{target="a"\} \d/);
    expect(m.body).toContain('bandwidth_probe_last_run_ok{target="a"} 1');
    expect(m.body).not.toMatch(/_mbps|_ms\{|_percent/);
    expect(m.body).toContain('bandwidth_probe_below_threshold{target="a"} 1');
    // latency under load, in seconds like the ping; btest receive loads the download only
    expect(m.body).toMatch(/bandwidth_probe_download_latency_seconds\{target="a"\} 0\.\d+/);
    expect(m.body).not.toMatch(/bandwidth_probe_upload_latency_seconds\{target="a"\}/);
    expect(m.body).toMatch(/bandwidth_probe_responsiveness_rpm\{target="a"\} \d+/);
    expect(m.body).toMatch(/bandwidth_probe_bufferbloat_grade\{target="a"\} [0-5]\b/);
    expect(m.body).toMatch(/bandwidth_probe_run_duration_seconds_count\{target="a",status="ok"\} 1/);
  });

  it('bad input is a 400 with a message', async () => {
    for (const url of [
      '/api/runs?limit=0',
      '/api/runs?limit=abc',
      '/api/runs?since=yesterday',
      '/api/runs?target=Bad!',
      '/api/runs?colour=red',
      '/api/runs/abc',
    ]) {
      const r = await app.inject({ url });
      expect(r.statusCode, url).toBe(400);
      expect(r.json().message, url).toBeTruthy();
    }
    expect((await app.inject({ url: '/api/runs/99999' })).statusCode).toBe(404);
    const unknown = await app.inject({ method: 'POST', url: '/api/run', payload: { target: 'zzz' } });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().message).toMatch(/unknown target "zzz"/);
    const extra = await app.inject({ method: 'POST', url: '/api/run', payload: { target: 'a', now: true } });
    expect(extra.statusCode).toBe(400);
  });

  it('the run endpoint is rate-limited (run_limit per minute)', async () => {
    // this app allows 4 a minute; earlier tests used some
    const codes: number[] = [];
    for (let i = 0; i < 5; i++)
      codes.push(
        (await app.inject({ method: 'POST', url: '/api/run', payload: { target: 'b' } })).statusCode,
      );
    expect(codes).toContain(429);
    expect(codes.filter((c) => c === 202).length).toBeLessThanOrEqual(4);
  });
});

describe('access', () => {
  it('as an add-on (ingress) only the Supervisor may connect', async () => {
    const h = await makeApp({}, true);
    try {
      const page = await h.app.inject({
        url: '/',
        remoteAddress: '172.30.32.2',
        headers: { 'x-ingress-path': '/api/hassio_ingress/AbC123' },
      });
      expect(page.statusCode).toBe(200);
      expect(page.body).toContain('<base href="/api/hassio_ingress/AbC123/">');
      // only the Supervisor's form of the prefix: no other origin, path or markup
      for (const bad of [
        '//evil.example/x',
        '/api/hassio_ingress/../../x',
        '/elsewhere',
        '"><script>alert(1)</script>',
        '/api/hassio_ingress/a/b',
      ]) {
        const r = await h.app.inject({
          url: '/',
          remoteAddress: '172.30.32.2',
          headers: { 'x-ingress-path': bad },
        });
        expect(r.body, bad).toContain('<base href="./">');
      }
      expect((await h.app.inject({ url: '/api/status', remoteAddress: '172.30.32.2' })).statusCode).toBe(200);
      for (const ip of ['172.30.32.1', '192.168.1.20', '127.0.0.1']) {
        const r = await h.app.inject({ url: '/api/status', remoteAddress: ip });
        expect(r.statusCode, ip).toBe(403);
      }
      // the container's health check from loopback is allowed, nothing else is
      expect((await h.app.inject({ url: '/healthz', remoteAddress: '127.0.0.1' })).json()).toEqual({
        ok: true,
        running: null,
      });
      expect((await h.app.inject({ url: '/healthz', remoteAddress: '10.0.0.9' })).statusCode).toBe(403);
      expect((await h.app.inject({ url: '/api/status', remoteAddress: '127.0.0.1' })).statusCode).toBe(403);
      // a forged forwarding header does not help
      const forged = await h.app.inject({
        url: '/',
        remoteAddress: '10.0.0.9',
        headers: { 'x-forwarded-for': '172.30.32.2' },
      });
      expect(forged.statusCode).toBe(403);
    } finally {
      await h.close();
    }
  });

  it('standalone with basic auth and an API token', async () => {
    const h = await makeApp({ username: 'me', password: 'pw', api_token: 'tok' });
    try {
      const none = await h.app.inject({ url: '/' });
      expect(none.statusCode).toBe(401);
      expect(none.headers['www-authenticate']).toMatch(/^Basic/);
      const basic = `Basic ${Buffer.from('me:pw').toString('base64')}`;
      expect((await h.app.inject({ url: '/', headers: { authorization: basic } })).statusCode).toBe(200);
      const wrong = `Basic ${Buffer.from('me:nope').toString('base64')}`;
      expect((await h.app.inject({ url: '/', headers: { authorization: wrong } })).statusCode).toBe(401);
      expect(
        (await h.app.inject({ url: '/api/status', headers: { authorization: 'Bearer tok' } })).statusCode,
      ).toBe(200);
      expect(
        (await h.app.inject({ url: '/api/status', headers: { authorization: 'Bearer nope' } })).statusCode,
      ).toBe(401);
    } finally {
      await h.close();
    }
  });
});

describe('server-sent events', () => {
  it('streams a run (no Content-Length, so ingress passes it through as it comes)', async () => {
    const h = await makeApp();
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (h.app.server.address() as AddressInfo).port;
    const got: string[] = [];
    let headers: http.IncomingHttpHeaders = {};
    const req = http.get({ host: '127.0.0.1', port, path: '/api/events' }, (res) => {
      headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (d: string) => got.push(d));
    });
    req.on('error', () => {});
    try {
      const until = Date.now() + 5000;
      while (!got.join('').includes('event: hello') && Date.now() < until)
        await new Promise((r) => setTimeout(r, 20));
      expect(headers['content-type']).toMatch(/^text\/event-stream/);
      expect(headers['content-length']).toBeUndefined();
      const done = h.finished();
      h.runner.enqueue('a', 'manual');
      await done;
      await new Promise((r) => setTimeout(r, 100));
      const text = got.join('');
      for (const ev of ['queued', 'started', 'phase', 'progress', 'finished'])
        expect(text).toContain(`event: ${ev}\n`);
    } finally {
      req.destroy();
      await h.close();
    }
  });
});

describe('page weight', () => {
  it("the page's JS and CSS stay under 150 kB uncompressed", () => {
    const require = createRequire(import.meta.url);
    const uplot = join(require.resolve('uplot'), '..');
    const pub = join(import.meta.dirname, '../../public');
    // every module of the page: public/*.js and the protocols' page modules
    const modules = [
      ...readdirSync(pub).filter((f) => f.endsWith('.js')),
      ...readdirSync(join(pub, 'protocols')).map((f) => `protocols/${f}`),
    ];
    const total = [
      ...modules.map((f) => join(pub, f)),
      join(pub, 'app.css'),
      join(uplot, 'uPlot.iife.min.js'),
      join(uplot, 'uPlot.min.css'),
    ]
      .map((f) => statSync(f).size)
      .reduce((a, b) => a + b, 0);
    expect(total).toBeLessThan(150 * 1024);
  });

  it('CSV cells are quoted and formula-looking text is defused', () => {
    const row = {
      id: 1,
      target: 'a',
      kind: 'btest' as const,
      started_at: 's',
      finished_at: 'f',
      status: 'failed' as const,
      error_code: 'BP_ERR_CONNECT',
      error: 'said "no", then =HYPERLINK()',
      download_mbps: null,
      upload_mbps: -1,
      ping_ms: null,
      jitter_ms: null,
      loss_percent: null,
      download_latency_ms: null,
      upload_latency_ms: null,
      responsiveness_rpm: null,
      bufferbloat_grade: null,
      flags: ['link_busy', 'cpu_limited'],
      engine: 'js',
      server: '=cmd|x',
      trigger: null,
    };
    const line = toCsv([row]).split('\r\n')[1]!;
    expect(line).toContain('"said ""no"", then =HYPERLINK()"');
    expect(line).toContain(",'=cmd|x,");
    expect(line).toContain(',-1,');
    expect(line).toContain('link_busy cpu_limited');
  });
});
