import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Settings } from '../config/settings.js';
import { raiseFdLimit, webConnectionBudget } from '../engine/fdlimit.js';
import { ProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { buildApp, type WebDeps } from '../web/app.js';
import { ensureWebToken, isLoopbackBind } from '../web/token.js';

/** What the page needs beyond what it hands to buildApp as it is: the settings and the service's log. */
export interface PageDeps
  extends Omit<WebDeps, 'settings' | 'bind' | 'tokenAsPassword' | 'maxConnections' | 'timeouts' | 'log'> {
  s: Settings;
  log: Logger;
}

export interface Page {
  app: FastifyInstance;
  port: number;
  bind: string;
}

/**
 * The status page, when web.enabled. Safe by default: loopback standalone; wider only with credentials,
 * which are generated when none are set, unless the user says `unauthenticated` (and is warned every
 * start). A page that cannot listen (a taken port) fails the start.
 */
export async function startPage(d: PageDeps): Promise<Page> {
  const { s, log, ingress } = d;
  const bind = s.web.bind ?? (ingress ? '0.0.0.0' : '127.0.0.1');
  const wide = !ingress && !isLoopbackBind(bind);
  const hasCreds = Boolean((s.web.username && s.web.password) || s.web.api_token);
  let webSettings = s.web;
  let tokenAsPassword = false;
  if (wide && !hasCreds && !s.web.unauthenticated) {
    const t = ensureWebToken(s.general.data_dir);
    webSettings = { ...s.web, api_token: t.token };
    tokenAsPassword = true;
    if (t.created)
      log.warn(
        { bind, token_file: t.path },
        `the page is bound to ${bind} without credentials: it now requires this generated token (as "Authorization: Bearer <token>", or as the password with any user name): ${t.token}`,
      );
    else log.info({ bind, token_file: t.path }, 'the page requires the token kept in the token file');
  } else if (wide && !hasCreds) {
    log.warn(
      { bind },
      `UNAUTHENTICATED: the page, its JSON API, POST api/run and /metrics are open to anyone who can reach ${bind} (web.unauthenticated is on)`,
    );
  }
  const fds = raiseFdLimit(log);
  const { s: _settings, log: _log, ...deps } = d;
  const app = await buildApp({
    ...deps,
    settings: webSettings,
    bind,
    tokenAsPassword,
    maxConnections: webConnectionBudget(fds.soft),
    log: log.child({ module: 'web' }),
  });
  try {
    await app.listen({ host: bind, port: s.web.port });
  } catch (err) {
    await closePage(app);
    throw new ProbeError(
      'BP_ERR_CONFIG',
      `the page cannot listen on ${bind}:${s.web.port}: ${(err as Error).message}`,
    );
  }
  const port = (app.server.address() as AddressInfo).port;
  log.info(
    { bind, port, ingress, max_connections: app.server.maxConnections, nofile: fds.soft },
    'status page listening',
  );
  return { app, port, bind };
}

/** SSE streams never end by themselves: the page is closed with a bound, so the service can stop. */
export async function closePage(app: FastifyInstance): Promise<void> {
  await Promise.race([app.close(), new Promise((r) => setTimeout(r, 1000))]);
}
