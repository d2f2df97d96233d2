import { startBtestServer } from '../btest/serve.js';
import { quotaFrom } from '../net/quota.js';
import type { BtestServer } from '../btest/server.js';
import { type Settings } from '../config/settings.js';
import type { Engine } from '../engine/types.js';
import { toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { INBOUND_TARGET, type InboundKind, type InboundReport, inboundResult } from '../measure/inbound.js';
import { type RunningRmbtServers, startRmbtServers } from '../rmbt/serve.js';
import type { Store } from '../store/store.js';
import type { Quota } from '../net/quota.js';
import type { Runner } from './runner.js';

/**
 * Our servers inside `serve` (issue 18): the btest server (a MikroTik router's /tool bandwidth-test
 * aims at it) and the RMBT server, started when their `enabled` setting is on. Every test a peer runs
 * against them becomes an inbound run (stored, on the page, over MQTT and in the metrics).
 */
export interface ServedStatus {
  btest?: {
    port: number;
    /** the UDP ports handed out to UDP tests: udp_port_start and how many */
    udp_ports: { start: number; count: number };
    auth: string;
    user: string;
    active_sessions: number;
    stats: BtestServer['stats'];
  };
  rmbt?: {
    listeners: { port: number; tls: boolean; mode: string }[];
    control_port?: number;
    active_connections: number;
    stats: RunningRmbtServers['measurement']['stats'];
  };
  /** a server that could not start (a taken port): the service runs on without it and says why */
  errors?: { server: 'btest' | 'rmbt'; code: string; message: string }[];
}

export interface Inbound {
  readonly btest?: BtestServer;
  readonly rmbt?: RunningRmbtServers;
  status(): ServedStatus;
  close(): Promise<void>;
}

/** What the history says each address moved in the last 24 h, so a restart keeps the daily budgets. */
function seedQuota(q: Quota, store: Store, kind: InboundKind, log?: Logger): void {
  if (!q.active) return;
  try {
    const since = new Date(Date.now() - 86_400_000).toISOString();
    const runs = store.list({ target: INBOUND_TARGET, since, limit: 10_000 });
    q.seed(
      runs
        .filter((r) => r.result.target.kind === kind && r.result.inbound)
        .map((r) => ({
          address: r.result.inbound!.peer,
          at: Date.parse(r.result.started_at),
          bytes: r.result.inbound!.bytes_sent + r.result.inbound!.bytes_received,
        })),
    );
  } catch (err) {
    log?.warn(
      { code: toProbeError(err).code, err: String(err) },
      'daily quotas start empty: history unreadable',
    );
  }
}

export async function startInbound(
  s: Settings,
  engine: Engine,
  store: Store,
  runner: Runner,
  log: Logger,
  opts: { ephemeralPorts?: boolean } = {},
): Promise<Inbound | undefined> {
  if (!s.btest_server.enabled && !s.rmbt_server.enabled) return undefined;
  const record = (r: InboundReport) => {
    try {
      runner.recordInbound(inboundResult(r));
    } catch (err) {
      log.error({ err: String(err) }, 'an inbound test could not be recorded');
    }
  };
  let btest: BtestServer | undefined;
  let rmbt: RunningRmbtServers | undefined;
  // A server that cannot start (its port taken, a bad certificate) is logged with its code and left
  // out: the measurements, the page and MQTT go on, and the page's Served section shows why.
  const errors: NonNullable<ServedStatus['errors']> = [];
  const failed = (server: 'btest' | 'rmbt', err: unknown) => {
    const e = toProbeError(err, 'BP_ERR_CONFIG');
    errors.push({ server, code: e.code, message: e.message });
    log.error(
      { code: e.code, err: e.message, server },
      `the ${server} server did not start; serving without it`,
    );
  };
  if (s.btest_server.enabled) {
    try {
      const quota = quotaFrom(s.btest_server);
      seedQuota(quota, store, 'btest-server', log);
      btest = await startBtestServer(s.btest_server, engine, log.child({ module: 'btest-server' }), {
        quota,
        onSession: record,
        ...(opts.ephemeralPorts ? { port: 0 } : {}),
      });
    } catch (err) {
      failed('btest', err);
    }
  }
  if (s.rmbt_server.enabled) {
    try {
      const quota = quotaFrom(s.rmbt_server);
      seedQuota(quota, store, 'rmbt-server', log);
      rmbt = await startRmbtServers(s.rmbt_server, s.general, engine, log.child({ module: 'rmbt-server' }), {
        quota,
        onTest: record,
        ...(opts.ephemeralPorts ? { ephemeralPorts: true } : {}),
      });
    } catch (err) {
      failed('rmbt', err);
    }
  }
  log.info(
    {
      ...(btest ? { btest_port: btest.port } : {}),
      ...(rmbt ? { rmbt_listeners: rmbt.measurement.listeners.map((l) => l.port) } : {}),
      ...(rmbt?.control ? { rmbt_control_port: rmbt.control.port } : {}),
    },
    'serving tests to other clients: their tests are stored as inbound runs',
  );
  return {
    ...(btest ? { btest } : {}),
    ...(rmbt ? { rmbt } : {}),
    status() {
      const out: ServedStatus = errors.length ? { errors: [...errors] } : {};
      if (btest)
        out.btest = {
          port: btest.port,
          udp_ports: {
            start: s.btest_server.udp_port_start,
            count: s.btest_server.udp_port_count || s.btest_server.max_sessions,
          },
          auth: s.btest_server.auth,
          user: s.btest_server.user,
          active_sessions: btest.activeSessions,
          stats: { ...btest.stats },
        };
      if (rmbt)
        out.rmbt = {
          listeners: rmbt.measurement.listeners.map((l) => ({ port: l.port, tls: l.tls, mode: l.mode })),
          ...(rmbt.control ? { control_port: rmbt.control.port } : {}),
          active_connections: rmbt.measurement.activeConnections,
          stats: { ...rmbt.measurement.stats },
        };
      return out;
    },
    async close() {
      await btest?.close();
      await rmbt?.close();
    },
  };
}
