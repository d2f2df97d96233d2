import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSettings } from '../../src/config/load.js';
import type { Settings } from '../../src/config/settings.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { nativeEngine } from '../../src/engine/loader.js';
import type { Engine } from '../../src/engine/types.js';
import { type RunningRmbtServers, startRmbtServers } from '../../src/rmbt/serve.js';
import type { RmbtSettings } from '../../src/rmbt/settings.js';

/**
 * Engines every protocol test runs on. The native one must load: a missing build fails the tests
 * rather than skipping them.
 */
export const ENGINES: { name: 'js' | 'native'; make: () => Engine }[] = [
  { name: 'js', make: () => new JsEngine() },
  {
    name: 'native',
    make: () => {
      const n = nativeEngine();
      if (!n.engine) throw new Error(`the native engine did not load: ${n.reason}`);
      return n.engine;
    },
  },
];

export function tempDir(prefix = 'bp-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Our servers on 127.0.0.1 with every listener kind on a free port, and a control server. */
export async function startServers(
  engine: Engine,
  over: Record<string, unknown> = {},
): Promise<{ servers: RunningRmbtServers; settings: Settings }> {
  const settings = loadSettings({
    flags: {
      general: { data_dir: tempDir(), log_level: 'silent' },
      rmbt_server: { bind: '127.0.0.1', plain_port: '1', tls_plain_port: '1', idle_timeout: '5', ...over },
    },
  });
  const servers = await startRmbtServers(settings.rmbt_server, settings.general, engine, undefined, {
    ephemeralPorts: true,
  });
  return { servers, settings };
}

/** Short, test-sized client settings; `over` are flag-style overrides. */
export function clientSettings(over: Record<string, string> = {}): RmbtSettings {
  return loadSettings({
    flags: {
      rmbt: {
        duration: '1',
        pretest_duration: '0.2',
        ping_duration: '0.1',
        pings: '5',
        io_timeout: '3',
        ...over,
      },
    },
  }).rmbt;
}

/**
 * A scripted fake measurement server: it speaks a correct preamble, then hands each command line to
 * `onCommand`, which decides what the misbehaving server does.
 */
export async function fakeServer(
  onCommand: (line: string, sock: net.Socket) => void,
): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on('error', () => {});
    sock.write('RMBTv1.3.5\nACCEPT TOKEN QUIT\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.startsWith('TOKEN '))
          sock.write('OK\nCHUNKSIZE 4096 4096 4194304\nACCEPT GETCHUNKS GETTIME PUT PUTNORESULT PING QUIT\n');
        else onCommand(line, sock);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        server.close(() => r());
      }),
  };
}
