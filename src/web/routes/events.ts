import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import type { RunnerEvent } from '../../runner/runner.js';
import type { WebDeps } from '../deps.js';

/** Open SSE streams at most; the oldest is closed for a new one. */
export const MAX_SSE = 32;

/** Live events (Server-Sent Events): the runner's events as they happen, a run's figures not included. */
export const eventRoutes: FastifyPluginAsync<WebDeps> = async (app, d) => {
  const streams = new Set<ServerResponse>();
  app.get('/api/events', (req, reply) => {
    // Server-Sent Events: no Content-Length, so ingress streams it chunk by chunk (§5).
    reply.hijack();
    const res = reply.raw;
    // At most MAX_SSE streams: a new page beats the oldest one (which reconnects if it is still there).
    if (streams.size >= MAX_SSE) {
      const oldest = streams.values().next().value!;
      streams.delete(oldest);
      oldest.end();
      oldest.socket?.destroySoon();
    }
    streams.add(res);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    const send = (e: RunnerEvent | { type: 'hello'; running: unknown }) => {
      const data =
        e.type === 'finished' || e.type === 'inbound'
          ? {
              type: e.type,
              target: e.target,
              run_id: e.run_id ?? null,
              stored: e.stored,
              status: e.result.status,
            }
          : e;
      res.write(`event: ${e.type}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    send({ type: 'hello', running: d.runner.status().running ?? null });
    const off = d.runner.on(send);
    const ping = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const done = () => {
      clearInterval(ping);
      off();
      streams.delete(res);
    };
    req.raw.on('close', done);
    res.on('close', done);
  });
};
