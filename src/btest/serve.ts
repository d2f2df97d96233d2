import type { BtestServerSettings } from '../config/schema.js';
import type { Engine } from '../engine/types.js';
import type { Logger } from '../log.js';
import type { InboundReport } from '../measure/inbound.js';
import { Quota } from '../util/quota.js';
import { BtestServer } from './server.js';

/** A server's daily quota from its settings group (issue 18); shared by the btest and RMBT servers. */
export function quotaFrom(s: {
  max_daily_bytes_per_address: number;
  max_daily_tests_per_address: number;
  max_daily_bytes: number;
}): Quota {
  return new Quota({
    dailyBytesPerAddress: s.max_daily_bytes_per_address,
    dailySessionsPerAddress: s.max_daily_tests_per_address,
    dailyBytes: s.max_daily_bytes,
  });
}

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
