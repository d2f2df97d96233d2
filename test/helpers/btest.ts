import { BtestServer, type BtestServerOptions } from '../../src/btest/server.js';
import type { Engine } from '../../src/engine/types.js';

/** Our btest server on a free loopback port with test-sized limits; `over` changes any option. */
export async function startBtestServer(
  engine: Engine,
  over: Partial<BtestServerOptions> = {},
): Promise<BtestServer> {
  const s = new BtestServer({
    host: '127.0.0.1',
    port: 0,
    udpPortStart: 30000 + Math.floor(Math.random() * 20000),
    auth: 'ecsrp5',
    user: 'admin',
    password: 'secret',
    maxSessions: 4,
    maxDurationS: 30,
    maxBytes: 0,
    handshakeTimeoutMs: 2000,
    engine,
    ...over,
  });
  await s.start();
  return s;
}
