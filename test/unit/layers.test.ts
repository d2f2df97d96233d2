import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { PROTOCOLS } from '../../src/protocols/registry.js';

/**
 * The layers of docs/internals.md, read from the source: which module imports which (static, type-only
 * and `await import()` alike), and how long each function is.
 */
const SRC = join(import.meta.dirname, '../../src');
const REGISTRY = 'protocols/registry.ts';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const sources = new Map(
  files(SRC).map((p) => [
    relative(SRC, p),
    ts.createSourceFile(p, readFileSync(p, 'utf8'), ts.ScriptTarget.ES2022, true),
  ]),
);

/** The modules under src/ a file imports, as paths relative to src/. */
function importsOf(file: string, sf: ts.SourceFile): string[] {
  const out: string[] = [];
  const add = (spec: string) => {
    if (!spec.startsWith('.')) return;
    out.push(relative(SRC, resolve(dirname(join(SRC, file)), spec.replace(/\.js$/, '.ts'))));
  };
  const visit = (n: ts.Node) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier)
      add((n.moduleSpecifier as ts.StringLiteral).text);
    if (
      ts.isCallExpression(n) &&
      n.expression.kind === ts.SyntaxKind.ImportKeyword &&
      n.arguments[0] &&
      ts.isStringLiteral(n.arguments[0])
    )
      add(n.arguments[0].text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const graph = new Map([...sources].map(([f, sf]) => [f, importsOf(f, sf)]));
const protocolDirs: string[] = PROTOCOLS.map((p) => p.type);
const folderOf = (f: string) => (f.includes('/') ? f.split('/')[0]! : '');

describe('layers', () => {
  it('every import resolves to a module in src/', () => {
    const missing = [...graph].flatMap(([f, deps]) =>
      deps.filter((d) => !sources.has(d)).map((d) => `${f} → ${d}`),
    );
    expect(missing).toEqual([]);
  });

  it('no protocol folder imports another protocol', () => {
    const bad = [...graph].flatMap(([f, deps]) =>
      protocolDirs.includes(folderOf(f))
        ? deps
            .filter((d) => protocolDirs.includes(folderOf(d)) && folderOf(d) !== folderOf(f))
            .map((d) => `${f} → ${d}`)
        : [],
    );
    expect(bad).toEqual([]);
  });

  it('only the registry imports a protocol folder from outside it', () => {
    const bad = [...graph].flatMap(([f, deps]) =>
      protocolDirs.includes(folderOf(f)) || f === REGISTRY
        ? []
        : deps.filter((d) => protocolDirs.includes(folderOf(d))).map((d) => `${f} → ${d}`),
    );
    expect(bad).toEqual([]);
  });

  it('no protocol-neutral module names a protocol in a comparison (`type === "rmbt"`)', () => {
    const names = protocolDirs.map((t) => `'${t}'`);
    const bad: string[] = [];
    for (const [f, sf] of sources) {
      if (protocolDirs.includes(folderOf(f)) || f === REGISTRY) continue;
      const visit = (n: ts.Node) => {
        if (
          ts.isBinaryExpression(n) &&
          [ts.SyntaxKind.EqualsEqualsEqualsToken, ts.SyntaxKind.ExclamationEqualsEqualsToken].includes(
            n.operatorToken.kind,
          ) &&
          [n.left, n.right].some((x) => ts.isStringLiteral(x) && names.includes(`'${x.text}'`))
        )
          bad.push(`${f}:${sf.getLineAndCharacterOfPosition(n.getStart()).line + 1} ${n.getText()}`);
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
    expect(bad).toEqual([]);
  });

  it('no import cycle, type imports and lazy imports included', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const walk = (f: string) => {
      state.set(f, 'open');
      stack.push(f);
      for (const d of graph.get(f) ?? []) {
        if (state.get(d) === 'open') cycles.push([...stack.slice(stack.indexOf(d)), d].join(' → '));
        else if (!state.has(d)) walk(d);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of graph.keys()) if (!state.has(f)) walk(f);
    expect(cycles).toEqual([]);
  });

  it('no function in src/ is longer than 150 lines', () => {
    const long: string[] = [];
    for (const [f, sf] of sources) {
      const visit = (n: ts.Node) => {
        if (ts.isFunctionLike(n) && 'body' in n && n.body) {
          const a = sf.getLineAndCharacterOfPosition(n.getStart()).line;
          const b = sf.getLineAndCharacterOfPosition(n.getEnd()).line;
          if (b - a + 1 > 150) long.push(`${f}:${a + 1} (${b - a + 1} lines)`);
        }
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
    expect(long).toEqual([]);
  });
});
