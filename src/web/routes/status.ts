import type { FastifyPluginAsync } from 'fastify';
import { INBOUND_TARGET } from '../../measure/inbound.js';
import type { Inbound } from '../../runner/inbound.js';
import type { RunSummary } from '../../store/store.js';
import type { WebDeps } from '../deps.js';

/** Liveness, and the page's one status answer: the service, its targets and our servers. */
export const statusRoutes: FastifyPluginAsync<WebDeps> = async (app, d) => {
  // Liveness for the container HEALTHCHECK: the process answers and the runner is not wedged.
  app.get('/healthz', async () => ({ ok: true, running: d.runner.status().running?.target ?? null }));

  const lastOf = (target: string): RunSummary | null => {
    try {
      return d.store.summaries({ target, limit: 1 })[0] ?? null;
    } catch {
      // a damaged history: store_error says so, the targets are still listed
      return null;
    }
  };
  const served = (i: Inbound) => ({ ...i.status(), last: lastOf(INBOUND_TARGET) });

  app.get('/api/status', async () => {
    const targets = d.targets.map((t) => {
      const last = lastOf(t.id);
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
};
