import type { FastifyPluginAsync } from 'fastify';
import { ProbeError } from '../../errors.js';
import type { WebDeps } from '../deps.js';

/** Run now: queues one target or all of them, rate-limited (a reload storm is not a run storm). */
export const controlRoutes: FastifyPluginAsync<WebDeps> = async (app, d) => {
  const byId = new Map(d.targets.map((t) => [t.id, t]));
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
};
