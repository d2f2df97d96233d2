import type { FastifyPluginAsync } from 'fastify';
import type { WebDeps } from '../deps.js';
import { createMetrics } from '../metrics.js';

/** Prometheus metrics of the runs, the targets and the served tests (src/web/metrics.ts). */
export const metricsRoutes: FastifyPluginAsync<WebDeps> = async (app, d) => {
  const metrics = createMetrics(d.store, d.runner, d.targets, d.inbound);
  app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));
};
