import { closeSync, existsSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import http from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BtestServer } from '../../src/btest/server.js';
import { loadSettings } from '../../src/config/load.js';
import type { WebSettings } from '../../src/config/schema.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { createLogger } from '../../src/log.js';
import { startService } from '../../src/main.js';
import { Runner } from '../../src/runner/runner.js';
import { Scheduler } from '../../src/runner/schedule.js';
import { Store } from '../../src/store/store.js';
import { buildApp, MAX_SSE, type WebTimeouts } from '../../src/web/app.js';
import { TOKEN_FILE } from '../../src/web/token.js';
import { startBtestServer } from '../helpers/btest.js';
import { tempDir } from '../helpers/rmbt.js';

/**
 * The page against misuse: safe defaults, cross-site and foreign-Host requests, the SSE cap, header
 * timeouts, streamed exports, ingress path, security headers, auth throttling and half-set
 * credentials. Real sockets where the check is about sockets.
 */
let btest: BtestServer;
const engine = new JsEngine();

beforeAll(async () => {
  btest = await startBtestServer(engine, {
    udpPortStart: 38000,
    auth: 'none',
    user: 'x',
    maxDurationS: 60,
  });
});
afterAll(() => btest.close());

const target = () => ({ id: 'a', type: 'btest', host: `127.0.0.1:${btest.port}`, duration: 1 });

async function makeApp(web: Record<string, string> = {}, opts: { timeouts?: Partial<WebTimeouts> } = {}) {
  const s = loadSettings({
    flags: { general: { data_dir: tempDir(), log_level: 'silent' }, service: { busy_check: 'off' }, web },
    env: { BANDWIDTH_PROBE_TARGETS: JSON.stringify([target()]) },
  });
  const store = Store.open(s.general.data_dir);
  const runner = new Runner({ targets: s.targets, general: s.general, service: s.service, engine, store });
  const scheduler = new Scheduler(s.targets, () => {});
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
    ingress: false,
    bind: '127.0.0.1',
    ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
  });
  const close = async () => {
    await runner.stop();
    await app.close();
    store.close();
  };
  return { app, store, runner, close };
}

describe('state-changing requests', () => {
  let h: Awaited<ReturnType<typeof makeApp>>;
  beforeAll(async () => {
    h = await makeApp({ run_limit: '20', allowed_hosts: 'probe.lan, Other.Example' });
  });
  afterAll(() => h.close());

  it('a simple cross-site POST (text/plain, no type, form) is refused before it queues anything', async () => {
    for (const headers of [
      { 'content-type': 'text/plain' },
      {},
      { 'content-type': 'application/x-www-form-urlencoded' },
      { 'content-type': 'multipart/form-data; boundary=x' },
    ]) {
      const r = await h.app.inject({
        method: 'POST',
        url: '/api/run',
        headers: { ...headers, origin: 'https://evil.example' },
        payload: '',
      });
      expect(r.statusCode, JSON.stringify(headers)).toBe(403);
      expect(r.json().message).toMatch(/application\/json/);
    }
    expect(h.runner.status().queued).toEqual([]);
    expect(h.runner.status().running).toBeUndefined();
  });

  it('JSON from another site is refused by Sec-Fetch-Site or Origin; our own page is accepted', async () => {
    const post = (headers: Record<string, string>) =>
      h.app.inject({
        method: 'POST',
        url: '/api/run',
        headers: { 'content-type': 'application/json', ...headers },
        payload: '{"target":"a"}',
      });
    expect((await post({ 'sec-fetch-site': 'cross-site' })).statusCode).toBe(403);
    expect((await post({ 'sec-fetch-site': 'same-site' })).statusCode).toBe(403);
    expect((await post({ origin: 'http://evil.example' })).statusCode).toBe(403);
    expect((await post({ origin: 'null' })).statusCode).toBe(403);
    expect((await post({ origin: 'http://localhost:81' })).statusCode).toBe(403); // another port
    const same = await post({ 'sec-fetch-site': 'same-origin', origin: 'http://localhost:80' });
    expect(same.statusCode).toBe(202);
    // a script (no browser headers) with JSON is an API client: fine
    const cli = await post({});
    expect([202, 400]).toContain(cli.statusCode); // 400 when a run of "a" is already queued
  });

  it('a foreign Host (DNS rebinding) is refused on every route; our names and any IP are fine', async () => {
    for (const url of ['/', '/api/status', '/api/export.json', '/metrics']) {
      const r = await h.app.inject({ url, headers: { host: 'evil.example' } });
      expect(r.statusCode, url).toBe(421);
    }
    for (const host of [
      'localhost:8099',
      '127.0.0.1:8099',
      '192.168.1.7',
      '[::1]:8099',
      'probe.lan:8099',
      'other.example',
      'probe.localhost',
    ]) {
      expect((await h.app.inject({ url: '/api/status', headers: { host } })).statusCode, host).toBe(200);
    }
  });

  it('security headers: CSP with frame-ancestors self, nosniff, SAMEORIGIN, no HSTS', async () => {
    const r = await h.app.inject({ url: '/' });
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("frame-ancestors 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'self'");
    expect(csp).not.toContain('upgrade-insecure-requests'); // the LAN page is plain HTTP
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(r.headers['strict-transport-security']).toBeUndefined();
    expect((await h.app.inject({ url: '/api/status' })).headers['x-content-type-options']).toBe('nosniff');
  });
});

describe('auth', () => {
  it('wrong passwords are throttled per address: after 10, 429 even for the right one', async () => {
    const h = await makeApp({ username: 'me', password: 'pw' });
    try {
      const wrong = `Basic ${Buffer.from('me:nope').toString('base64')}`;
      const right = `Basic ${Buffer.from('me:pw').toString('base64')}`;
      // a browser's first visit without credentials is no failed guess
      for (let i = 0; i < 20; i++) expect((await h.app.inject({ url: '/' })).statusCode).toBe(401);
      expect((await h.app.inject({ url: '/', headers: { authorization: right } })).statusCode).toBe(200);
      const codes: number[] = [];
      for (let i = 0; i < 30; i++)
        codes.push((await h.app.inject({ url: '/', headers: { authorization: wrong } })).statusCode);
      expect(codes.slice(0, 10)).toEqual(Array(10).fill(401));
      expect(codes.slice(10)).toEqual(Array(20).fill(429));
      const late = await h.app.inject({ url: '/', headers: { authorization: right } });
      expect(late.statusCode).toBe(429);
      expect(Number(late.headers['retry-after'])).toBeGreaterThan(0);
      // another address is not held back by this one's guesses
      const other = await h.app.inject({
        url: '/',
        remoteAddress: '10.1.2.3',
        headers: { authorization: right },
      });
      expect(other.statusCode).toBe(200);
    } finally {
      await h.close();
    }
  });

  it('a user name without a password (or the reverse) is a config error, not an open page', () => {
    for (const web of [{ username: 'me' }, { password: 'pw' }]) {
      let err: unknown;
      try {
        loadSettings({ flags: { general: { data_dir: tempDir() }, web } });
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string }).code).toBe('BP_ERR_CONFIG');
      expect(String((err as Error).message)).toMatch(/basic auth needs both web\.username and web\.password/);
    }
  });
});

/** A pino destination that keeps each JSON line. */
function capture(lines: string[]): Writable {
  return new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(l);
      cb();
    },
  });
}

describe('defaults', () => {
  const start = async (web: Record<string, unknown>) => {
    const dir = tempDir();
    const lines: string[] = [];
    const log = createLogger('info', capture(lines));
    const svc = await startService(
      loadSettings({
        flags: {
          general: { data_dir: dir, log_level: 'info' },
          service: { busy_check: 'off' },
          mqtt: { enabled: 'off' },
          web: { port: 0, ...web },
        },
        env: { BANDWIDTH_PROBE_TARGETS: JSON.stringify([target()]) },
      }),
      log,
      { version: '9.9.9', env: {} },
    );
    return { svc, dir, lines };
  };
  const get = (port: number, host: string, path: string, auth?: string) =>
    new Promise<number>((resolve, reject) => {
      const req = http.get(
        { host, port, path, headers: auth ? { authorization: auth } : {}, timeout: 5000 },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
    });
  const refused = (port: number, host: string) =>
    new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', () => resolve(true));
    });

  it('standalone with no web settings: 127.0.0.1 only, open there', async () => {
    const { svc } = await start({});
    try {
      expect(await get(svc.webPort!, '127.0.0.1', '/api/status')).toBe(200);
      // 127.0.0.2 is loopback too, but not the address we bound: nothing listens there
      expect(await refused(svc.webPort!, '127.0.0.2')).toBe(true);
    } finally {
      await svc.close();
    }
  });

  it('bound wider without credentials: a token is generated once, kept, and required', async () => {
    const a = await start({ bind: '0.0.0.0' });
    let token = '';
    try {
      const file = join(a.dir, TOKEN_FILE);
      expect(existsSync(file)).toBe(true);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      token = readFileSync(file, 'utf8').trim();
      expect(token.length).toBeGreaterThanOrEqual(32);
      const warn = a.lines.map((l) => JSON.parse(l)).find((l) => l.token_file);
      expect(warn.level).toBe(40);
      expect(warn.msg).toContain(token); // printed once, on the start that made it
      expect(await get(a.svc.webPort!, '127.0.0.1', '/api/status')).toBe(401);
      expect(await get(a.svc.webPort!, '127.0.0.2', '/api/status', `Bearer ${token}`)).toBe(200);
      const basic = `Basic ${Buffer.from(`anyone:${token}`).toString('base64')}`;
      expect(await get(a.svc.webPort!, '127.0.0.1', '/', basic)).toBe(200);
    } finally {
      await a.svc.close();
    }
  });

  it('a restart on the same data dir reuses the token and does not log it', async () => {
    const dir = tempDir();
    const run = async () => {
      const lines: string[] = [];
      const svc = await startService(
        loadSettings({
          flags: {
            general: { data_dir: dir, log_level: 'info' },
            service: { busy_check: 'off' },
            mqtt: { enabled: 'off' },
            web: { port: 0, bind: '0.0.0.0' },
          },
          env: { BANDWIDTH_PROBE_TARGETS: JSON.stringify([target()]) },
        }),
        createLogger('info', capture(lines)),
        { version: '9.9.9', env: {} },
      );
      await svc.close();
      return lines;
    };
    await run();
    const token = readFileSync(join(dir, TOKEN_FILE), 'utf8').trim();
    const second = await run();
    expect(readFileSync(join(dir, TOKEN_FILE), 'utf8').trim()).toBe(token);
    expect(second.join('\n')).not.toContain(token);
    expect(second.join('\n')).toContain('the page requires the token kept in the token file');
  });

  it('web.unauthenticated opens it wide, with a warning', async () => {
    const { svc, lines, dir } = await start({ bind: '0.0.0.0', unauthenticated: true });
    try {
      expect(await get(svc.webPort!, '127.0.0.1', '/api/status')).toBe(200);
      expect(existsSync(join(dir, TOKEN_FILE))).toBe(false);
      const warn = lines.map((l) => JSON.parse(l)).find((l) => /UNAUTHENTICATED/.test(l.msg));
      expect(warn?.level).toBe(40);
    } finally {
      await svc.close();
    }
  });
});

describe('connection budgets', () => {
  it(`keeps at most ${MAX_SSE} event streams: the oldest are closed for new ones`, async () => {
    const h = await makeApp();
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (h.app.server.address() as AddressInfo).port;
    const n = MAX_SSE + 8;
    const closed: number[] = [];
    const reqs: http.ClientRequest[] = [];
    try {
      for (let i = 0; i < n; i++) {
        await new Promise<void>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: '/api/events', agent: false }, (res) => {
            res.on('data', () => {});
            res.on('close', () => closed.push(i));
            resolve();
          });
          req.on('error', reject);
          reqs.push(req);
        });
      }
      const until = Date.now() + 5000;
      while (closed.length < 8 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(closed.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    } finally {
      for (const r of reqs) r.destroy();
      await h.close();
    }
  });

  it('half-sent request heads are closed at the header timeout (slowloris)', async () => {
    const h = await makeApp({}, { timeouts: { headersMs: 1000, checkMs: 250 } });
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (h.app.server.address() as AddressInfo).port;
    const socks: Socket[] = [];
    const ends: number[] = [];
    const t0 = Date.now();
    try {
      for (let i = 0; i < 100; i++) {
        const s = connect({ host: '127.0.0.1', port });
        s.on('error', () => {});
        s.on('data', () => {});
        s.once('close', () => ends.push(Date.now() - t0));
        s.write('GET / HTTP/1.1\r\nHost: localhost\r\n');
        socks.push(s);
      }
      // one more header line every 300 ms: never a complete head
      const drip = setInterval(() => {
        for (const s of socks) if (!s.destroyed) s.write('X-Slow: 1\r\n');
      }, 300);
      const until = Date.now() + 8000;
      while (ends.length < socks.length && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      clearInterval(drip);
      expect(ends.length).toBe(100);
      // closed by the server (1 s + one check interval, with room for a busy machine), not by us
      expect(Math.max(...ends)).toBeLessThan(7000);
      // and a real request still gets through
      const code = await new Promise<number>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          })
          .on('error', reject);
      });
      expect(code).toBe(200);
    } finally {
      for (const s of socks) s.destroy();
      await h.close();
    }
  });
});

describe('exports stream', () => {
  it('20 parallel exports of 3000 runs: chunked, complete, and healthz answers while they run', async () => {
    const h = await makeApp();
    const base = {
      target: { id: 'a', name: 'a', kind: 'btest' },
      status: 'ok',
      flags: [],
      engine: 'js',
      server: { host: '127.0.0.1' },
      download: { mbps: 100, bytes: 1, duration_s: 1, threads: 1, series: [] },
      upload: { mbps: 50, bytes: 1, duration_s: 1, threads: 1, series: [] },
      ping: { median_ms: 1, samples_ms: [] },
    };
    const t = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < 3000; i++) {
      const at = new Date(t + i * 60_000).toISOString();
      h.store.insert({ ...base, started_at: at, finished_at: at } as never);
    }
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (h.app.server.address() as AddressInfo).port;
    const fetchAll = (path: string) =>
      new Promise<{ body: string; chunked: boolean; endedAt: number }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => {
              body += d;
            });
            res.on('end', () =>
              resolve({ body, chunked: res.headers['transfer-encoding'] === 'chunked', endedAt: Date.now() }),
            );
          })
          .on('error', reject);
      });
    try {
      const exports = Array.from({ length: 20 }, (_, i) =>
        fetchAll(i % 2 ? '/api/export.csv' : '/api/export.json'),
      );
      // healthz, one after another, while the exports run
      const lat: number[] = [];
      let firstEnd = 0;
      let over = false;
      void Promise.all(exports).then(() => {
        over = true;
      });
      while (!over && lat.length < 50) {
        const h0 = Date.now();
        const health = await fetchAll('/healthz');
        firstEnd ||= health.endedAt;
        lat.push(Date.now() - h0);
      }
      const done = await Promise.all(exports);
      // healthz was answered before the exports were through (they yield between pages)
      expect(firstEnd).toBeGreaterThan(0);
      expect(firstEnd).toBeLessThan(Math.max(...done.map((d) => d.endedAt)));
      lat.sort((a, b) => a - b);
      console.log(
        `healthz during 20 exports of 3000 runs: ${lat.length} answers, median ${lat[lat.length >> 1]} ms, max ${lat.at(-1)} ms`,
      );
      for (const [i, d] of done.entries()) {
        expect(d.chunked).toBe(true);
        if (i % 2) expect(d.body.trim().split('\r\n')).toHaveLength(3001);
        else {
          const runs = JSON.parse(d.body).runs as { id: number }[];
          expect(runs).toHaveLength(3000);
          expect(runs.map((r) => r.id)).toEqual(Array.from({ length: 3000 }, (_, k) => k + 1));
        }
      }
    } finally {
      await h.close();
    }
  });
});

describe('a damaged history', () => {
  it('api/status still answers with store_error; runs and exports are a coded 503, not a 500', async () => {
    const h = await makeApp();
    try {
      const at = (i: number) => new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString();
      for (let i = 0; i < 300; i++)
        h.store.insert({
          target: { id: 'a', kind: 'btest' },
          server: { host: 'h'.repeat(2000), port: 1 },
          started_at: at(i),
          finished_at: at(i),
          status: 'ok',
          engine: 'js',
          cpu: {},
          flags: [],
        } as never);
      const db = h.store._dbForCrashTest();
      db.pragma('wal_checkpoint(TRUNCATE)');
      const file = db.name;
      const fd = openSync(file, 'r+');
      writeSync(fd, Buffer.alloc(4096 * 20, 0x5a), 0, 4096 * 20, 4096 * 10);
      closeSync(fd);
      db.pragma('shrink_memory');
      for (const url of ['/api/runs', '/api/export.csv', '/api/export.json']) {
        const r = await h.app.inject({ url });
        expect(r.statusCode, url).toBe(503);
        expect(r.json(), url).toMatchObject({ error: 'store_error', code: 'BP_ERR_STORE_CORRUPT' });
      }
      const st = await h.app.inject({ url: '/api/status' });
      expect(st.statusCode).toBe(200);
      expect(st.json().store_error).toMatchObject({ code: 'BP_ERR_STORE_CORRUPT' });
      expect(st.json().targets.map((t: { id: string }) => t.id)).toEqual(['a']);
    } finally {
      await h.close();
    }
  });
});
