import type { Settings } from '../config/settings.js';
import type { Engine } from '../engine/types.js';
import { toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { INBOUND_TARGET, type InboundReport, inboundResult } from '../measure/inbound.js';
import { type Quota, quotaFrom } from '../net/quota.js';
import type { AnyProtocol, RunningServer } from '../protocols/contract.js';
import { PROTOCOLS, type ServerHandles } from '../protocols/registry.js';
import type { Store } from '../store/store.js';
import type { Runner } from './runner.js';

/**
 * Our servers inside `serve`: each protocol's server (a MikroTik router's /tool bandwidth-test aims at
 * the btest one, another probe at the RMBT one), started when its group's `enabled` setting is on.
 * Every test a peer runs against them becomes an inbound run (stored, on the page, over MQTT and in the
 * metrics).
 */
export type ServedStatus = { [type: string]: unknown } & {
  /** a server that could not start (a taken port): the service runs on without it and says why */
  errors?: { server: string; code: string; message: string }[];
};

/** A server that runs, with the protocol it belongs to. */
export interface Served {
  protocol: AnyProtocol;
  running: RunningServer;
}

/** The running servers; each protocol's own server object under its type (`inbound.btest.port`). */
export type Inbound = ServerHandles & {
  readonly servers: readonly Served[];
  status(): ServedStatus;
  close(): Promise<void>;
};

/** What the history says each address moved in the last 24 h, so a restart keeps the daily budgets. */
function seedQuota(q: Quota, store: Store, kind: string, log?: Logger): void {
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
  const groups = s as unknown as Record<string, unknown>;
  const wanted = PROTOCOLS.filter((p) => p.server?.enabled(groups[p.server.group] as never));
  if (!wanted.length) return undefined;
  const onTest = (r: InboundReport) => {
    try {
      runner.recordInbound(inboundResult(r));
    } catch (err) {
      log.error({ err: String(err) }, 'an inbound test could not be recorded');
    }
  };
  const servers: Served[] = [];
  // A server that cannot start (its port taken, a bad certificate) is logged with its code and left
  // out: the measurements, the page and MQTT go on, and the page's Served section shows why.
  const errors: NonNullable<ServedStatus['errors']> = [];
  for (const p of wanted as readonly AnyProtocol[]) {
    const spec = p.server!;
    const settings = groups[spec.group] as Parameters<typeof quotaFrom>[0];
    try {
      const quota = quotaFrom(settings);
      seedQuota(quota, store, spec.kind, log);
      const running = await spec.start(settings, {
        general: s.general,
        engine,
        log: log.child({ module: spec.kind }),
        quota,
        onTest,
        ...(opts.ephemeralPorts ? { ephemeralPorts: true } : {}),
      });
      servers.push({ protocol: p, running });
    } catch (err) {
      const e = toProbeError(err, 'BP_ERR_CONFIG');
      errors.push({ server: p.type, code: e.code, message: e.message });
      log.error(
        { code: e.code, err: e.message, server: p.type },
        `the ${p.type} server did not start; serving without it`,
      );
    }
  }
  log.info(
    Object.fromEntries(servers.map((x) => [x.protocol.type, x.running.status()])),
    'serving tests to other clients: their tests are stored as inbound runs',
  );
  return {
    ...(Object.fromEntries(servers.map((x) => [x.protocol.type, x.running.handle])) as ServerHandles),
    servers,
    status() {
      const out: ServedStatus = errors.length ? { errors: [...errors] } : {};
      for (const x of servers) out[x.protocol.type] = x.running.status();
      return out;
    },
    async close() {
      for (const x of servers) await x.running.close();
    },
  };
}
