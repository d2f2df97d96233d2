import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { PROTOCOLS } from '../../protocols/registry.js';
import type { WebDeps } from '../deps.js';
import { ingressBase } from '../guard.js';

/** Where the page's files are: <package>/public, next to dist/. */
export const PUBLIC = join(import.meta.dirname, '../../../public');

const JS = 'text/javascript; charset=utf-8';

/** The page's ES modules (public/*.js, each protocol's public/protocols/<page>), styles, icon and uPlot. */
function assets(): Map<string, { type: string; body: Buffer }> {
  const require = createRequire(import.meta.url);
  const uplotDir = join(require.resolve('uplot'), '..');
  const files = new Map<string, { type: string; body: Buffer }>();
  const add = (name: string, path: string, type: string) =>
    files.set(name, { type, body: readFileSync(path) });
  for (const m of readdirSync(PUBLIC).filter((f) => f.endsWith('.js'))) add(m, join(PUBLIC, m), JS);
  for (const p of PROTOCOLS) add(`protocols/${p.page}`, join(PUBLIC, 'protocols', p.page), JS);
  // the page's list of protocol modules, made from the registry (the page has no build step)
  const imports = PROTOCOLS.map((p, i) => `import p${i} from './${p.page}';`).join('\n');
  const meta = JSON.stringify(
    PROTOCOLS.map((p) => ({ type: p.type, label: p.label, short: p.short, kind: p.server?.kind ?? null })),
  );
  const list = PROTOCOLS.map((_, i) => `p${i}`).join(', ');
  files.set('protocols/index.js', {
    type: JS,
    body: Buffer.from(
      `${imports}\nconst meta = ${meta};\nexport default [${list}].map((p, i) => ({ ...meta[i], ...p }));\n`,
    ),
  });
  add('app.css', join(PUBLIC, 'app.css'), 'text/css; charset=utf-8');
  add('icon.svg', join(PUBLIC, 'icon.svg'), 'image/svg+xml');
  add('uplot.js', join(uplotDir, 'uPlot.iife.min.js'), JS);
  add('uplot.css', join(uplotDir, 'uPlot.min.css'), 'text/css; charset=utf-8');
  return files;
}

/** The page itself and its static files. */
export const pageRoutes: FastifyPluginAsync<WebDeps> = async (app, d) => {
  const files = assets();
  const index = readFileSync(join(PUBLIC, 'index.html'), 'utf8');
  app.get('/', async (req, reply) => {
    // Relative URLs already work under the ingress prefix; the base element pins them for any path.
    // Only the Supervisor's form of the prefix, and only behind ingress.
    const base = ingressBase(req.headers['x-ingress-path'], d.ingress);
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      .send(index.replace('<base href="./">', `<base href="${base}">`));
  });
  for (const [name, f] of files) {
    app.get(`/${name}`, async (_req, reply) =>
      reply.type(f.type).header('cache-control', 'public, max-age=3600').send(f.body),
    );
  }
};
