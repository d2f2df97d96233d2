import { Readable } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import { INBOUND_TARGET } from '../../measure/inbound.js';
import { csvHeader, csvRow, inboundCsvHeader, inboundCsvRow } from '../../store/csv.js';
import type { RunQuery, RunSummary } from '../../store/store.js';
import type { WebDeps } from '../deps.js';

/** Rows an export holds at most, and per page it reads (store.summaryPages). */
export const EXPORT_MAX_ROWS = 100_000;
const EXPORT_PAGE = 200;

/**
 * A pause that lets one waiter through per pass of the event loop (setImmediate), in arrival order:
 * however many exports run, each pass does one page of work and then serves sockets again.
 */
function oneTurnPerTick(): () => Promise<void> {
  const waiting: (() => void)[] = [];
  let scheduled = false;
  const next = () => {
    scheduled = false;
    waiting.shift()?.();
    if (waiting.length) {
      scheduled = true;
      setImmediate(next);
    }
  };
  return () =>
    new Promise<void>((resolve) => {
      waiting.push(resolve);
      if (!scheduled) {
        scheduled = true;
        setImmediate(next);
      }
    });
}

/**
 * Which runs a list or export holds: all of them, the probe's own measurements (`measured`), or the
 * tests other clients ran against our servers (`inbound`). A `target` narrows it further.
 */
const SCOPES = ['all', 'measured', 'inbound'] as const;
type Scope = (typeof SCOPES)[number];
const scopeQuery = (q: { target?: string; since?: string; scope?: Scope }): RunQuery => ({
  ...(q.target ? { target: q.target } : q.scope === 'inbound' ? { target: INBOUND_TARGET } : {}),
  ...(q.scope === 'measured' ? { excludeTarget: INBOUND_TARGET } : {}),
  ...(q.since ? { since: q.since } : {}),
});

const runsQuery = {
  type: 'object',
  properties: {
    target: { type: 'string', pattern: '^[a-z0-9_]{1,40}$' },
    since: { type: 'string', format: 'date-time' },
    limit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 },
    scope: { type: 'string', enum: SCOPES, default: 'all' },
  },
  additionalProperties: false,
} as const;

/** The history: run lists, one run's detail, and the CSV and JSON exports. */
export const runRoutes: FastifyPluginAsync<WebDeps> = async (app, d) => {
  app.get('/api/runs', { schema: { querystring: runsQuery } }, async (req) => {
    const q = req.query as { target?: string; since?: string; limit: number; scope: Scope };
    return { runs: d.store.summaries({ ...scopeQuery(q), limit: q.limit }) };
  });

  app.get(
    '/api/runs/:id',
    {
      schema: {
        params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] },
      },
    },
    async (req, reply) => {
      const run = d.store.get((req.params as { id: number }).id);
      if (!run) return reply.code(404).send({ error: 'not_found', message: 'no run with this id' });
      return { id: run.id, published: run.published, ...run.result };
    },
  );

  const exportQuery = {
    type: 'object',
    properties: {
      target: { type: 'string', pattern: '^[a-z0-9_]{1,40}$' },
      since: { type: 'string', format: 'date-time' },
      scope: { type: 'string', enum: SCOPES, default: 'all' },
    },
    additionalProperties: false,
  } as const;
  type ExportQuery = { target?: string; since?: string; scope: Scope };
  /** the inbound runs alone export the Served table's columns (peer, user, protocol, bytes…) */
  const servedOnly = (q: ExportQuery) =>
    q.scope === 'inbound' || (q.target === INBOUND_TARGET && q.scope !== 'measured');
  // Exports stream page by page: no whole-history string, and other requests go on meanwhile.
  // All exports share one turn per event-loop pass, so twenty of them cost a healthz no more than one.
  const turn = oneTurnPerTick();
  const exportRows = (q: ExportQuery) =>
    d.store.summaryPages({ ...scopeQuery(q), limit: EXPORT_MAX_ROWS }, EXPORT_PAGE, turn);
  app.get('/api/export.csv', { schema: { querystring: exportQuery } }, async (req, reply) => {
    const q = req.query as ExportQuery;
    const pages = exportRows(q);
    const [header, row] = servedOnly(q) ? [inboundCsvHeader, inboundCsvRow] : [csvHeader, csvRow];
    // the first page is read before the answer starts, so a damaged history is a coded 503
    const first = await pages.next();
    async function* body() {
      yield header();
      if (!first.done) yield first.value.map(row).join('');
      for await (const rows of pages) yield rows.map(row).join('');
    }
    const name = servedOnly(q) ? 'bandwidth-probe-served' : 'bandwidth-probe-runs';
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${name}.csv"`)
      .send(Readable.from(body(), { highWaterMark: 1 }));
  });
  app.get('/api/export.json', { schema: { querystring: exportQuery } }, async (req, reply) => {
    const q = req.query as ExportQuery;
    const pages = exportRows(q);
    const head = await pages.next();
    async function* body() {
      yield '{"runs":[';
      const text = (rows: RunSummary[]) => rows.map((r) => JSON.stringify(r)).join(',');
      if (!head.done) {
        yield text(head.value);
        for await (const rows of pages) yield `,${text(rows)}`;
      }
      yield ']}';
    }
    return reply
      .type('application/json; charset=utf-8')
      .header(
        'content-disposition',
        `attachment; filename="${servedOnly(q) ? 'bandwidth-probe-served' : 'bandwidth-probe-runs'}.json"`,
      )
      .send(Readable.from(body(), { highWaterMark: 1 }));
  });
};
