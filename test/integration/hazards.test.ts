import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { measureRmbt } from '../../src/rmbt/measure.js';
import { clientSettings, ENGINES, startServers } from '../helpers/rmbt.js';

const CHILD = join(import.meta.dirname, '../fixtures/hazard-child.mjs');

function child(mode: string, flags: string[] = []) {
  const t = Date.now();
  const r = spawnSync(process.execPath, [...flags, CHILD, mode], { encoding: 'utf8', timeout: 30_000 });
  return { ...r, ms: Date.now() - t };
}

describe.each([
  { over: 'plain TCP', suffix: '' },
  { over: 'native TLS', suffix: '-tls' },
])('native engine hazards over $over', ({ suffix }) => {
  it('process.exit in the middle of a native download exits at once (the cleanup hook stops the loops)', () => {
    const r = child(`exit${suffix}`);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(7);
    expect(r.signal).toBeNull();
  });

  it('a worker terminated mid-run does not hang or crash the process, which then measures fine', () => {
    const r = child(`terminate${suffix}`);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('terminated');
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toEqual({
      status: 'ok',
      engine: 'native',
      tls: suffix !== '',
    });
  });

  it('runs survive garbage collection between and after them', () => {
    const r = child(`gc${suffix}`, ['--expose-gc']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('gc-ok');
  });
});

describe('native engine beside the js engine', () => {
  it('two native runs and a js run at once, all against one native server, plain and TLS', async () => {
    const [js, native] = [ENGINES[0]!.make(), ENGINES[1]!.make()];
    const { servers, settings } = await startServers(native);
    try {
      for (const transport of ['http', 'https'] as const) {
        const s = clientSettings({
          server: `127.0.0.1:${servers.measurement.portOf('http', transport === 'https')}`,
          key: servers.keys[0]!,
          transport,
          threads: '2',
          tls_insecure: 'true',
        });
        const results = await Promise.all([
          measureRmbt(s, { engine: native, general: settings.general }),
          measureRmbt(s, { engine: native, general: settings.general }),
          measureRmbt(s, { engine: js, general: settings.general }),
        ]);
        expect(results.map((r) => r.status)).toEqual(['ok', 'ok', 'ok']);
        expect(results.map((r) => r.engine)).toEqual(['native', 'native', 'js']);
      }
    } finally {
      await servers.close();
    }
  });

  it('the engines agree on the wire: js client with native server and native client with js server', async () => {
    const [js, native] = [ENGINES[0]!, ENGINES[1]!];
    for (const [client, server] of [
      [js, native],
      [native, js],
    ] as const) {
      const { servers, settings } = await startServers(server.make());
      try {
        for (const transport of ['plain', 'ws', 'tls', 'wss'] as const) {
          const tlsPort = transport === 'tls' || transport === 'wss';
          const port = servers.measurement.portOf(
            transport === 'plain' || transport === 'tls' ? 'plain' : 'http',
            tlsPort,
          )!;
          const r = await measureRmbt(
            clientSettings({
              server: `127.0.0.1:${port}`,
              key: servers.keys[0]!,
              transport,
              threads: '2',
              tls_insecure: 'true',
            }),
            {
              engine: client.make(),
              general: settings.general,
            },
          );
          expect(r.error, `${client.name} client, ${server.name} server, ${transport}`).toBeUndefined();
          for (const st of r.download!.per_stream) expect(st.bytes % r.download!.chunk_size!).toBe(0);
          for (const st of r.upload!.per_stream) expect(st.bytes % r.upload!.chunk_size!).toBe(0);
        }
      } finally {
        await servers.close();
      }
    }
  });
});
