import type { GeneralSettings } from '../config/schema.js';
import type { Engine } from '../engine/types.js';
import type { Logger } from '../log.js';
import type { InboundReport } from '../measure/inbound.js';
import { ensureCert } from '../net/certs.js';
import { type Quota, quotaFrom } from '../net/quota.js';
import type { RunningServer, ServerStartOptions } from '../protocols/contract.js';
import { Ndt7Server } from './server.js';
import type { Ndt7ServerSettings } from './settings.js';

/** Starts our ndt7 server from its settings group (the `server ndt7` command and `serve`). */
export async function startNdt7Server(
  s: Ndt7ServerSettings,
  general: GeneralSettings,
  engine: Engine,
  log: Logger | undefined,
  opts: { quota?: Quota; onTest?: (r: InboundReport) => void; ephemeral?: boolean } = {},
): Promise<Ndt7Server> {
  const creds = s.tls_port
    ? await ensureCert(general.data_dir, s.cert, s.cert_key, 'ndt7_server')
    : undefined;
  const server = new Ndt7Server({
    host: s.bind,
    port: opts.ephemeral ? 0 : s.port,
    ...(s.tls_port ? { tlsPort: opts.ephemeral ? 0 : s.tls_port } : {}),
    creds,
    maxSessions: s.max_sessions,
    engine,
    quota: opts.quota ?? quotaFrom(s),
    onTest: opts.onTest,
    log,
  });
  await server.start();
  return server;
}

/** Our ndt7 server as a server of `serve`: what api/status and the metrics read of it. */
export async function serveNdt7(
  s: Ndt7ServerSettings,
  o: ServerStartOptions,
): Promise<RunningServer<Ndt7Server>> {
  const server = await startNdt7Server(s, o.general, o.engine, o.log, {
    quota: o.quota,
    onTest: o.onTest,
    ...(o.ephemeralPorts ? { ephemeral: true } : {}),
  });
  return {
    handle: server,
    status: () => ({
      port: server.port,
      ...(server.tlsPort ? { tls_port: server.tlsPort } : {}),
      active_sessions: server.activeSessions,
      stats: { ...server.stats },
    }),
    counters() {
      const st = server.stats;
      return {
        sessions: st.sessions,
        refused: {
          busy: st.busy,
          quota: st.quota,
          bad_request: st.bad_request,
          not_found: st.not_found,
          handshake_timeout: st.handshake_timeout,
        },
      };
    },
    close: () => server.close(),
  };
}
