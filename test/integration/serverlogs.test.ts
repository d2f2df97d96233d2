import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { measureBtest } from '../../src/btest/measure.js';
import { loadSettings } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { measureRmbt } from '../../src/rmbt/measure.js';
import { startRmbtServers } from '../../src/rmbt/serve.js';
import { startBtestServer } from '../helpers/btest.js';
import { clientSettings, ENGINES, tempDir } from '../helpers/rmbt.js';

/** A logger whose JSON lines a test can read back. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) {
        raw.push(l);
        lines.push(JSON.parse(l) as Record<string, unknown>);
      }
      done();
    },
  });
  return { log: createLogger('info', sink), lines, raw };
}

const general = loadSettings().general;

/** Waits (bounded) until the servers have written what a finished client implies. */
async function until(ok: () => boolean, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !ok() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
}

/** Server-side session logs at info: what a router owner or an operator reads. */
describe.each(ENGINES)('server session logs, $name engine', ({ make }) => {
  it('btest: login accepted with the user (never the password), test start and end with figures; refused logins', async () => {
    const engine = make();
    const { log, lines, raw } = capture();
    const server = await startBtestServer(engine, { log, password: 'sesame-42' });
    try {
      const btest = (over: Record<string, string>) =>
        measureBtest(
          loadSettings({
            flags: {
              btest: {
                host: `127.0.0.1:${server.port}`,
                user: 'admin',
                duration: '1',
                io_timeout: '3',
                ...over,
              },
            },
          }).btest,
          { engine, general },
        );
      const ok = await btest({ password: 'sesame-42', protocol: 'tcp', direction: 'receive' });
      expect(ok.status).toBe('ok');
      const bad = await btest({ user: 'eve', password: 'guess' });
      expect(bad.error!.code).toBe('BP_ERR_BTEST_AUTH');
      await until(
        () =>
          lines.filter((l) => l.event === 'auth').length >= 2 && lines.some((l) => l.event === 'test_end'),
      );
      const auth = lines.filter((l) => l.event === 'auth');
      expect(auth).toEqual([
        expect.objectContaining({ result: 'success', method: 'ecsrp5', user: 'admin', level: 30 }),
        expect.objectContaining({ result: 'failure', method: 'ecsrp5', user: 'eve', level: 30 }),
      ]);
      expect(String(auth[0]!.peer)).toMatch(/^127\.0\.0\.1:\d+$/);
      const end = lines.find((l) => l.event === 'test_end')!;
      expect(end).toMatchObject({ protocol: 'tcp', server_sends: true, server_receives: false });
      expect(end.tx_bytes as number).toBeGreaterThan(0);
      expect(end.tx_mbps as number).toBeGreaterThan(0);
      expect(lines.some((l) => l.event === 'test_start')).toBe(true);
      expect(raw.join('\n')).not.toContain('sesame-42');
      expect(raw.join('\n')).not.toContain('guess');
    } finally {
      await server.close();
    }
  });

  it('RMBT: tokens accepted (uuid, v1/v2) and refused (reason), each session’s end with its figures', async () => {
    const engine = make();
    const { log, lines } = capture();
    const dataDir = tempDir();
    const s = loadSettings({
      flags: {
        general: { data_dir: dataDir },
        rmbt_server: { bind: '127.0.0.1', control_port: '0', tls_port: '0' },
      },
    });
    const servers = await startRmbtServers(s.rmbt_server, s.general, engine, log, { ephemeralPorts: true });
    try {
      const server = `127.0.0.1:${servers.measurement.portOf('http', false)}`;
      const r = await measureRmbt(
        clientSettings({ server, key: servers.keys[0]!, transport: 'http', threads: '2' }),
        { engine, general: { ...general, data_dir: dataDir } },
      );
      expect(r.status).toBe('ok');
      const bad = await measureRmbt(clientSettings({ server, key: 'not-the-key', transport: 'http' }), {
        engine,
        general: { ...general, data_dir: dataDir },
      });
      expect(bad.error!.code).toBe('BP_ERR_RMBT_TOKEN');
      await until(() => lines.some((l) => l.event === 'token' && l.result === 'refused'));
      await until(
        () => servers.measurement.activeConnections === 0 && servers.measurement.pendingConnections === 0,
      );
      const tokens = lines.filter((l) => l.event === 'token');
      expect(tokens.filter((l) => l.result === 'accepted').length).toBeGreaterThanOrEqual(2);
      expect(tokens.find((l) => l.result === 'accepted')).toMatchObject({ token_version: 1, level: 30 });
      expect(tokens.some((l) => l.result === 'refused' && l.reason === 'hmac')).toBe(true);
      const ends = lines.filter((l) => l.event === 'session_end');
      expect(ends.reduce((a, l) => a + (l.sent_bytes as number), 0)).toBeGreaterThanOrEqual(
        r.download!.bytes,
      );
      expect(ends.reduce((a, l) => a + (l.received_bytes as number), 0)).toBeGreaterThanOrEqual(
        r.upload!.bytes,
      );
      expect(ends.some((l) => (l.pings as number) >= r.ping!.count)).toBe(true);
    } finally {
      await servers.close();
    }
  });
});
