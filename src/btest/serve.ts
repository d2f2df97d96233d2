import type { Engine } from '../engine/types.js';
import type { Logger } from '../log.js';
import type { InboundReport } from '../measure/inbound.js';
import { type Quota, quotaFrom } from '../net/quota.js';
import type { RunningServer, ServerStartOptions } from '../protocols/contract.js';
import { BtestServer } from './server.js';
import type { BtestServerSettings } from './settings.js';

/** Starts our btest server from its settings group (the `server btest` command and `serve`). */
export async function startBtestServer(
  b: BtestServerSettings,
  engine: Engine,
  log: Logger | undefined,
  opts: { quota?: Quota; onSession?: (r: InboundReport) => void; port?: number } = {},
): Promise<BtestServer> {
  const server = new BtestServer({
    host: b.bind,
    port: opts.port ?? b.port,
    udpPortStart: b.udp_port_start,
    udpPortCount: b.udp_port_count,
    auth: b.auth,
    user: b.user,
    ...(b.password ? { password: b.password } : {}),
    maxSessions: b.max_sessions,
    maxDurationS: b.max_duration,
    maxBytes: b.max_bytes,
    handshakeTimeoutMs: b.handshake_timeout * 1000,
    engine,
    quota: opts.quota ?? quotaFrom(b),
    ...(opts.onSession ? { onSession: opts.onSession } : {}),
    ...(log ? { log } : {}),
  });
  await server.start();
  return server;
}

/** Our btest server as a server of `serve`: what api/status and the metrics read of it. */
export async function serveBtest(
  b: BtestServerSettings,
  o: ServerStartOptions,
): Promise<RunningServer<BtestServer>> {
  const server = await startBtestServer(b, o.engine, o.log, {
    quota: o.quota,
    onSession: o.onTest,
    ...(o.ephemeralPorts ? { port: 0 } : {}),
  });
  return {
    handle: server,
    status: () => ({
      port: server.port,
      // the UDP ports handed out to UDP tests: udp_port_start and how many
      udp_ports: { start: b.udp_port_start, count: b.udp_port_count || b.max_sessions },
      auth: b.auth,
      user: b.user,
      active_sessions: server.activeSessions,
      stats: { ...server.stats },
    }),
    counters() {
      const st = server.stats;
      return {
        sessions: st.sessions,
        refused: {
          auth: st.authFailed,
          quota: st.quota,
          busy: Math.max(0, st.refused - st.quota),
          handshake_timeout: st.handshakeTimeouts,
          evicted: st.evicted,
        },
      };
    },
    close: () => server.close(),
  };
}
