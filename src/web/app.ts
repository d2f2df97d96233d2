import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyInstance } from 'fastify';
import { ProbeError } from '../errors.js';
import { checkAccess } from './access.js';
import type { WebDeps, WebTimeouts } from './deps.js';
import { allowedHosts, CSP_DIRECTIVES, guard } from './guard.js';
import { controlRoutes } from './routes/control.js';
import { eventRoutes } from './routes/events.js';
import { metricsRoutes } from './routes/metrics.js';
import { pageRoutes } from './routes/page.js';
import { runRoutes } from './routes/runs.js';
import { statusRoutes } from './routes/status.js';

export type { WebDeps, WebTimeouts } from './deps.js';
export { MAX_SSE } from './routes/events.js';
export { EXPORT_MAX_ROWS } from './routes/runs.js';

/**
 * The status page, JSON API, SSE progress and Prometheus metrics (fastify), served from the service's
 * process. Every URL the page uses is relative, so it works at the root of the standalone port and under
 * ingress's `/api/hassio_ingress/<token>/` prefix (specs/ha-addon.md §5). The guards sit on the root
 * context, so they cover every route and every 404; each route group is a plugin of its own (routes/).
 */
export const WEB_TIMEOUTS: WebTimeouts = {
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 5_000,
  idleMs: 60_000,
  checkMs: 2_000,
};

/** Node's own deadlines, which fastify exposes only in part: a head must arrive within headersMs. */
function httpServer(t: WebTimeouts, maxConnections: number | undefined) {
  return (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
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
    if (maxConnections) server.maxConnections = maxConnections;
    return server;
  };
}

/** Host allow-list and same-origin JSON for state changes first, then who may use the page at all. */
async function guards(app: FastifyInstance, d: WebDeps): Promise<void> {
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
    // The history cannot be read (damaged file, disk gone): a coded 503, not a bare 500
    if (err instanceof ProbeError && err.code.startsWith('BP_ERR_STORE')) {
      void reply.code(503).send({ error: 'store_error', code: err.code, message: err.message });
      return;
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status === 500) d.log?.error({ err: err.message }, 'web request failed');
    void reply.code(status).send({ error: status === 400 ? 'bad_request' : 'error', message: err.message });
  });
  await app.register(rateLimit, { global: false });
}

export async function buildApp(d: WebDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    serverFactory: httpServer({ ...WEB_TIMEOUTS, ...d.timeouts }, d.maxConnections),
    // SSE streams stay open: a shutdown must not wait for browsers to go away
    forceCloseConnections: true,
    // ingress adds its own X-Forwarded-For; we decide on the socket's address, never on headers
    trustProxy: false,
    bodyLimit: 4096,
    // unknown query keys and body fields are errors, not silently dropped
    ajv: { customOptions: { removeAdditional: false } },
  });
  await guards(app, d);
  await app.register(pageRoutes, d);
  await app.register(statusRoutes, d);
  await app.register(runRoutes, d);
  await app.register(controlRoutes, d);
  await app.register(eventRoutes, d);
  await app.register(metricsRoutes, d);
  return app;
}
