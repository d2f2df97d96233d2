import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyInstance } from 'fastify';
import { type WebSettings } from '../config/schema.js';
import type { TargetSettings } from '../config/targets.js';
import { ProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { INBOUND_TARGET } from '../measure/inbound.js';
import type { PublisherStatus } from '../mqtt/publisher.js';
import type { Inbound } from '../runner/inbound.js';
import type { Runner, RunnerEvent } from '../runner/runner.js';
import type { Scheduler } from '../runner/schedule.js';
import { csvHeader, csvRow, inboundCsvHeader, inboundCsvRow } from '../store/csv.js';
import type { RunQuery, RunSummary, Store } from '../store/store.js';
import { checkAccess } from './access.js';
import { allowedHosts, CSP_DIRECTIVES, guard, ingressBase } from './guard.js';
import { createMetrics } from './metrics.js';

/**
 * The status page, JSON API, SSE progress and Prometheus metrics (fastify), served from the service's
 * process. Every URL the page uses is relative, so it works at the root of the standalone port and under
 * ingress's `/api/hassio_ingress/<token>/` prefix (specs/ha-addon.md §5).
 */
export interface WebDeps {
  runner: Runner;
  scheduler: Scheduler;
  store: Store;
  targets: readonly TargetSettings[];
  deviceId: string;
  version: string;
  engine: string;
  mqtt: () => PublisherStatus | undefined;
  settings: WebSettings;
  /** behind HA ingress: only the Supervisor may connect */
  ingress: boolean;
  /** the address the page listens on (a name in Host that equals it is ours) */
  bind?: string;
  /** `api_token` is the generated one: it also opens the page as a basic-auth password */
  tokenAsPassword?: boolean;
  /** most connections the page may hold at once (the descriptor budget, src/util/fdlimit.ts) */
  maxConnections?: number;
  /** no targets: the only target is the built-in loopback self-test (published: sent to HA as well) */
  selfTest?: { published: boolean } | undefined;
  /** the zone cron schedules are read in */
  timezone?: string;
  /** tests: a shorter header timeout and check interval than the defaults below */
  timeouts?: Partial<WebTimeouts>;
  log?: Logger;
  /** our servers inside the service (issue 18): the Served section, its runs and metrics */
  inbound?: Inbound;
}

/**
 * Timeouts of the page's HTTP server (issue 14 row 8: 1000 half-sent request heads were held for over
 * 70 s). Node checks header/request deadlines every `checkMs`; SSE streams are responses, which these
 * do not cut (they are kept alive by a comment every 15 s, below `idleMs`).
 */
export interface WebTimeouts {
  headersMs: number;
  requestMs: number;
  keepAliveMs: number;
  idleMs: number;
  checkMs: number;
}
export const WEB_TIMEOUTS: WebTimeouts = {
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 5_000,
  idleMs: 60_000,
  checkMs: 2_000,
};
/** Open SSE streams at most; the oldest is closed for a new one (row 7). */
export const MAX_SSE = 32;
/** Rows an export holds at most, and per page it reads (store.summaryPages). */
export const EXPORT_MAX_ROWS = 100_000;
const EXPORT_PAGE = 200;

/**
 * A pause that lets one waiter through per pass of the event loop (setImmediate), in arrival order:
 * however many exports run, each pass does one page of work and then serves sockets again.
 */
function oneTurnPerTick(): () => Promise<void> {
  const waiting: (() => void)[] = [];
  let scheduled = false;
  const next = () => {
    scheduled = false;
    waiting.shift()?.();
    if (waiting.length) {
      scheduled = true;
      setImmediate(next);
    }
  };
  return () =>
    new Promise<void>((resolve) => {
      waiting.push(resolve);
      if (!scheduled) {
        scheduled = true;
        setImmediate(next);
      }
    });
}

/** Where the page's files are: <package>/public, next to dist/. */
const PUBLIC = join(import.meta.dirname, '../../public');

function assets(): Map<string, { type: string; body: Buffer }> {
  const require = createRequire(import.meta.url);
  const uplotDir = join(require.resolve('uplot'), '..');
  const files = new Map<string, { type: string; body: Buffer }>();
  const add = (name: string, path: string, type: string) =>
    files.set(name, { type, body: readFileSync(path) });
  add('app.js', join(PUBLIC, 'app.js'), 'text/javascript; charset=utf-8');
  add('app.css', join(PUBLIC, 'app.css'), 'text/css; charset=utf-8');
  add('icon.svg', join(PUBLIC, 'icon.svg'), 'image/svg+xml');
  add('uplot.js', join(uplotDir, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8');
  add('uplot.css', join(uplotDir, 'uPlot.min.css'), 'text/css; charset=utf-8');
  return files;
}

/**
 * Which runs a list or export holds: all of them, the probe's own measurements (`measured`), or the
 * tests other clients ran against our servers (`inbound`, issue 18). A `target` narrows it further.
 */
const SCOPES = ['all', 'measured', 'inbound'] as const;
type Scope = (typeof SCOPES)[number];
const scopeQuery = (q: { target?: string; since?: string; scope?: Scope }): RunQuery => ({
  ...(q.target ? { target: q.target } : q.scope === 'inbound' ? { target: INBOUND_TARGET } : {}),
  ...(q.scope === 'measured' ? { excludeTarget: INBOUND_TARGET } : {}),
  ...(q.since ? { since: q.since } : {}),
});

const runsQuery = {
  type: 'object',
  properties: {
    target: { type: 'string', pattern: '^[a-z0-9_]{1,40}$' },
    since: { type: 'string', format: 'date-time' },
    limit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 },
    scope: { type: 'string', enum: SCOPES, default: 'all' },
  },
  additionalProperties: false,
} as const;

export async function buildApp(d: WebDeps): Promise<FastifyInstance> {
  const t = { ...WEB_TIMEOUTS, ...d.timeouts };
  const app = Fastify({
    logger: false,
    // Node's own deadlines, which fastify exposes only in part: a head must arrive within headersMs
    serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
      const server = createServer(
        {
          headersTimeout: t.headersMs,
          requestTimeout: t.requestMs,
          keepAliveTimeout: t.keepAliveMs,
          connectionsCheckingInterval: t.checkMs,
        },
        handler,
      );
      server.setTimeout(t.idleMs);
      if (d.maxConnections) server.maxConnections = d.maxConnections;
      return server;
    },
    // SSE streams stay open: a shutdown must not wait for browsers to go away
    forceCloseConnections: true,
    // ingress adds its own X-Forwarded-For; we decide on the socket's address, never on headers
    trustProxy: false,
    bodyLimit: 4096,
    // unknown query keys and body fields are errors, not silently dropped
    ajv: { customOptions: { removeAdditional: false } },
  });
  const files = assets();
  const index = readFileSync(join(PUBLIC, 'index.html'), 'utf8');
  const byId = new Map(d.targets.map((t) => [t.id, t]));
  const metrics = createMetrics(d.store, d.runner, d.targets, d.inbound);

  // Host allow-list and same-origin JSON for state changes first, then who may use the page at all.
  const extraHosts = (d.settings.allowed_hosts ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  app.addHook('onRequest', guard({ ingress: d.ingress, hosts: allowedHosts(extraHosts, d.bind ?? '') }));
  app.addHook(
    'onRequest',
    checkAccess({
      ingress: d.ingress,
      ...(d.settings.username ? { username: d.settings.username } : {}),
      ...(d.settings.password ? { password: d.settings.password } : {}),
      ...(d.settings.api_token ? { apiToken: d.settings.api_token } : {}),
      ...(d.tokenAsPassword ? { tokenAsPassword: true } : {}),
    }),
  );
  // A "simple" cross-site POST may be text/plain; we take JSON only (the guard says so first).
  app.removeContentTypeParser('text/plain');
  await app.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES },
    // HSTS would bind HA's own origin (ingress) or a LAN address to HTTPS: not ours to decide
    strictTransportSecurity: false,
    frameguard: { action: 'sameorigin' },
  });
  app.setErrorHandler((err: { statusCode?: number; message: string; validation?: unknown }, _req, reply) => {
    // The history cannot be read (damaged file, disk gone): a coded 503, not a bare 500 (row 17)
    if (err instanceof ProbeError && err.code.startsWith('BP_ERR_STORE')) {
      void reply.code(503).send({ error: 'store_error', code: err.code, message: err.message });
      return;
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status === 500) d.log?.error({ err: err.message }, 'web request failed');
    void reply.code(status).send({ error: status === 400 ? 'bad_request' : 'error', message: err.message });
  });
  await app.register(rateLimit, { global: false });

  app.get('/', async (req, reply) => {
    // Relative URLs already work under the ingress prefix; the base element pins them for any path.
    // Only the Supervisor's form of the prefix, and only behind ingress (row 25).
    const base = ingressBase(req.headers['x-ingress-path'], d.ingress);
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      .send(index.replace('<base href="./">', `<base href="${base}">`));
  });
  for (const [name, f] of files) {
    app.get(`/${name}`, async (_req, reply) =>
      reply.type(f.type).header('cache-control', 'public, max-age=3600').send(f.body),
    );
  }

  // Liveness for the container HEALTHCHECK: the process answers and the runner is not wedged.
  app.get('/healthz', async () => ({ ok: true, running: d.runner.status().running?.target ?? null }));

  const served = (i: Inbound) => {
    let last: RunSummary | null = null;
    try {
      last = d.store.summaries({ target: INBOUND_TARGET, limit: 1 })[0] ?? null;
    } catch {
      // a damaged history: store_error says so
    }
    return { ...i.status(), last };
  };

  app.get('/api/status', async () => {
    const targets = d.targets.map((t) => {
      let last: RunSummary | null = null;
      try {
        last = d.store.summaries({ target: t.id, limit: 1 })[0] ?? null;
      } catch {
        // a damaged history: store_error says so, the targets are still listed
      }
      const next = d.scheduler.next(t.id);
      return {
        id: t.id,
        name: t.name,
        type: t.type,
        enabled: t.enabled,
        schedule: t.schedule ?? `every ${t.interval} min`,
        next_run: next && Number.isFinite(next.due) ? new Date(next.due).toISOString() : null,
        thresholds: {
          download_mbps: t.threshold_download ?? null,
          upload_mbps: t.threshold_upload ?? null,
          ping_ms: t.threshold_ping ?? null,
          loaded_latency_ms: t.threshold_loaded_latency ?? null,
        },
        last,
      };
    });
    // read after the targets' queries, which may be what finds a damaged history
    const now = d.runner.status();
    return {
      version: d.version,
      device_id: d.deviceId,
      engine: d.engine,
      mqtt: d.mqtt() ?? null,
      running: now.running ?? null,
      queued: now.queued,
      store_error: now.store_error ?? null,
      self_test: Boolean(d.selfTest),
      self_test_published: Boolean(d.selfTest?.published),
      timezone: d.timezone ?? null,
      targets,
      served: d.inbound ? served(d.inbound) : null,
    };
  });

  app.get('/api/runs', { schema: { querystring: runsQuery } }, async (req) => {
    const q = req.query as { target?: string; since?: string; limit: number; scope: Scope };
    return { runs: d.store.summaries({ ...scopeQuery(q), limit: q.limit }) };
  });

  app.get(
    '/api/runs/:id',
    {
      schema: {
        params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] },
      },
    },
    async (req, reply) => {
      const run = d.store.get((req.params as { id: number }).id);
      if (!run) return reply.code(404).send({ error: 'not_found', message: 'no run with this id' });
      return { id: run.id, published: run.published, ...run.result };
    },
  );

  app.post(
    '/api/run',
    {
      config: { rateLimit: { max: d.settings.run_limit, timeWindow: 60_000 } },
      schema: {
        body: {
          anyOf: [
            { type: 'null' },
            {
              type: 'object',
              properties: { target: { type: 'string', pattern: '^[a-z0-9_]{1,40}$' } },
              additionalProperties: false,
            },
          ],
        },
      },
    },
    async (req, reply) => {
      const target = (req.body as { target?: string } | null)?.target ?? 'all';
      if (target !== 'all' && !byId.has(target))
        return reply.code(400).send({ error: 'bad_request', message: `unknown target "${target}"` });
      try {
        const asked = d.runner.enqueue(target, 'manual');
        // A target that starts at once is `started`, not queued; one asked for while it was already
        // queued or running is `already` (nothing new happens for it).
        const running = d.runner.status().running ?? null;
        const started = running && asked.includes(running.target) ? running.target : null;
        return reply.code(202).send({
          started,
          queued: asked.filter((id) => id !== started),
          already: target !== 'all' && !asked.includes(target) ? [target] : [],
          running,
        });
      } catch (err) {
        const e = err instanceof ProbeError ? err : new ProbeError('BP_ERR_USAGE', String(err));
        return reply.code(400).send({ error: 'bad_request', message: e.message });
      }
    },
  );

  const streams = new Set<ServerResponse>();
  app.get('/api/events', (req, reply) => {
    // Server-Sent Events: no Content-Length, so ingress streams it chunk by chunk (§5).
    reply.hijack();
    const res = reply.raw;
    // At most MAX_SSE streams: a new page beats the oldest one (which reconnects if it is still there).
    if (streams.size >= MAX_SSE) {
      const oldest = streams.values().next().value!;
      streams.delete(oldest);
      oldest.end();
      oldest.socket?.destroySoon();
    }
    streams.add(res);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    const send = (e: RunnerEvent | { type: 'hello'; running: unknown }) => {
      const data =
        e.type === 'finished' || e.type === 'inbound'
          ? {
              type: e.type,
              target: e.target,
              run_id: e.run_id ?? null,
              stored: e.stored,
              status: e.result.status,
            }
          : e;
      res.write(`event: ${e.type}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    send({ type: 'hello', running: d.runner.status().running ?? null });
    const off = d.runner.on(send);
    const ping = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const done = () => {
      clearInterval(ping);
      off();
      streams.delete(res);
    };
    req.raw.on('close', done);
    res.on('close', done);
  });

  const exportQuery = {
    type: 'object',
    properties: {
      target: { type: 'string', pattern: '^[a-z0-9_]{1,40}$' },
      since: { type: 'string', format: 'date-time' },
      scope: { type: 'string', enum: SCOPES, default: 'all' },
    },
    additionalProperties: false,
  } as const;
  type ExportQuery = { target?: string; since?: string; scope: Scope };
  /** the inbound runs alone export the Served table's columns (peer, user, protocol, bytes…) */
  const servedOnly = (q: ExportQuery) =>
    q.scope === 'inbound' || (q.target === INBOUND_TARGET && q.scope !== 'measured');
  // Exports stream page by page (row 19): no whole-history string, and other requests go on meanwhile.
  // All exports share one turn per event-loop pass, so twenty of them cost a healthz no more than one.
  const turn = oneTurnPerTick();
  const exportRows = (q: ExportQuery) =>
    d.store.summaryPages({ ...scopeQuery(q), limit: EXPORT_MAX_ROWS }, EXPORT_PAGE, turn);
  app.get('/api/export.csv', { schema: { querystring: exportQuery } }, async (req, reply) => {
    const q = req.query as ExportQuery;
    const pages = exportRows(q);
    const [header, row] = servedOnly(q) ? [inboundCsvHeader, inboundCsvRow] : [csvHeader, csvRow];
    // the first page is read before the answer starts, so a damaged history is a coded 503
    const first = await pages.next();
    async function* body() {
      yield header();
      if (!first.done) yield first.value.map(row).join('');
      for await (const rows of pages) yield rows.map(row).join('');
    }
    const name = servedOnly(q) ? 'bandwidth-probe-served' : 'bandwidth-probe-runs';
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${name}.csv"`)
      .send(Readable.from(body(), { highWaterMark: 1 }));
  });
  app.get('/api/export.json', { schema: { querystring: exportQuery } }, async (req, reply) => {
    const q = req.query as ExportQuery;
    const pages = exportRows(q);
    const head = await pages.next();
    async function* body() {
      yield '{"runs":[';
      const text = (rows: RunSummary[]) => rows.map((r) => JSON.stringify(r)).join(',');
      if (!head.done) {
        yield text(head.value);
        for await (const rows of pages) yield `,${text(rows)}`;
      }
      yield ']}';
    }
    return reply
      .type('application/json; charset=utf-8')
      .header(
        'content-disposition',
        `attachment; filename="${servedOnly(q) ? 'bandwidth-probe-served' : 'bandwidth-probe-runs'}.json"`,
      )
      .send(Readable.from(body(), { highWaterMark: 1 }));
  });

  app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));
  return app;
}
