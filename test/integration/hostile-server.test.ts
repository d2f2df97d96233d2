/**
 * The RMBT measurement server against unauthenticated or token-holding misuse, each misuse with
 * its fixed bound: slots per token and per address, the session time limit, bad arguments
 * closing the connection, an unknown-command flood from a peer that never reads, WebSocket
 * pings from a peer that never reads. Our server in this process, raw sockets on loopback.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { loadEngine } from '../../src/engine/loader.js';
import { Channel } from '../../src/net/channel.js';
import { encodeFrame, OP_PING } from '../../src/net/ws.js';
import { RmbtServer, type RmbtServerOptions } from '../../src/rmbt/server.js';
import { makeToken } from '../../src/rmbt/token.js';

const KEY = 'hostile-server-key';
const servers: RmbtServer[] = [];
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(over: Partial<RmbtServerOptions> = {}): Promise<RmbtServer> {
  const s = new RmbtServer({
    host: '127.0.0.1',
    listeners: [
      { port: 0, tls: false, mode: 'plain' },
      { port: 0, tls: false, mode: 'http' },
    ],
    keys: [KEY],
    maxConnections: 64,
    maxDuration: 3,
    idleTimeoutMs: 3000,
    handshakeTimeoutMs: 3000,
    engine: loadEngine('native'),
    ...over,
  });
  await s.start();
  servers.push(s);
  return s;
}

/** A plain-RMBT connection through its token; returns the channel and the server's answer to TOKEN. */
async function withToken(port: number, token: string, localAddress = '127.0.0.1') {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress });
  sockets.push(sock);
  const ch = new Channel(sock);
  await ch.readLine(2000); // greeting
  await ch.readLine(2000); // ACCEPT TOKEN QUIT
  ch.writeLine(`TOKEN ${token}`);
  const answer = await ch.readLine(2000);
  return { sock, ch, answer };
}

const closedWithin = (sock: net.Socket, ms: number) =>
  new Promise<boolean>((resolve) => {
    if (sock.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    sock.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });

describe('RMBT measurement server under misuse', () => {
  it('one token holds at most its grant + 1 connections; the rest get ERR BUSY, not a token error', async () => {
    const s = await server();
    const port = s.portOf('plain', false)!;
    const uuid = '0b6c7a5e-0000-4000-8000-000000000001';
    s.grant(uuid, 3);
    const token = makeToken(KEY, Math.floor(Date.now() / 1000), uuid);
    const answers: string[] = [];
    for (let i = 0; i < 8; i++) answers.push((await withToken(port, token)).answer);
    expect(answers.filter((a) => a === 'OK')).toHaveLength(4);
    expect(answers.slice(4)).toEqual(Array(4).fill('ERR BUSY this token already holds 4 connections'));
    // A token we did not issue (direct mode) gets DEFAULT_PER_TOKEN; another token still gets a slot.
    expect((await withToken(port, makeToken(KEY))).answer).toBe('OK');
    expect(s.activeConnections).toBe(5);
  });

  it('one address holds at most max_connections_per_address measuring connections', async () => {
    const s = await server({ maxPerAddress: 2 });
    const port = s.portOf('plain', false)!;
    const a = [];
    for (let i = 0; i < 3; i++) a.push((await withToken(port, makeToken(KEY), '127.0.0.2')).answer);
    expect(a).toEqual(['OK', 'OK', 'ERR BUSY this address already holds 2 connections']);
    // Another address is not locked out by the first one's use.
    expect((await withToken(port, makeToken(KEY), '127.0.0.3')).answer).toBe('OK');
  });

  it('a connection kept alive with PING past its test time is closed', async () => {
    const s = await server({ sessionMs: 1500 });
    const { ch, sock, answer } = await withToken(s.portOf('plain', false)!, makeToken(KEY));
    expect(answer).toBe('OK');
    const t0 = Date.now();
    let pings = 0;
    try {
      for (; Date.now() - t0 < 6000; pings++) {
        await ch.readLine(2000); // CHUNKSIZE or TIME
        await ch.readLine(2000); // ACCEPT
        ch.writeLine('PING');
        await ch.readLine(2000); // PONG
        ch.writeLine('OK');
      }
    } catch {
      // closed by the server
    }
    expect(await closedWithin(sock, 500)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(pings).toBeGreaterThan(3);
    expect(s.stats.sessionTimeouts).toBe(1);
  });

  for (const bad of [
    'GETCHUNKS 0',
    'GETCHUNKS -1',
    'GETCHUNKS 18446744073709551616',
    'GETTIME 0',
    'GETTIME 9999',
  ]) {
    it(`\`${bad}\` gets ERR and the connection is closed at once`, async () => {
      const s = await server();
      const { ch, sock } = await withToken(s.portOf('plain', false)!, makeToken(KEY));
      await ch.readLine(2000);
      await ch.readLine(2000);
      const t0 = Date.now();
      ch.writeLine(bad);
      expect(await ch.readLine(2000)).toBe('ERR');
      expect(await closedWithin(sock, 1500)).toBe(true);
      expect(Date.now() - t0).toBeLessThan(1500);
    });
  }

  it('a flood of unknown commands from a peer that never reads is cut off after a few answers', async () => {
    const s = await server();
    const { sock, ch } = await withToken(s.portOf('plain', false)!, makeToken(KEY));
    await ch.readLine(2000);
    await ch.readLine(2000);
    sock.pause();
    sock.write(Buffer.from('X\n'.repeat(20_000)));
    const t0 = Date.now();
    while (s.activeConnections > 0 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 20));
    expect(s.activeConnections).toBe(0);
    // Now read what the server sent: 8 answers of ERR + ACCEPT (about 460 bytes), not 20 000 of them.
    let got = 0;
    sock.on('data', (d: Buffer) => {
      got += d.length;
    });
    sock.resume();
    expect(await closedWithin(sock, 2000)).toBe(true);
    expect(got).toBeLessThan(1000);
  });

  it('WebSocket pings from a peer that never reads do not queue pongs without bound', async () => {
    const s = await server();
    const port = s.portOf('http', false)!;
    const before = process.memoryUsage().rss;
    const conns = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const sock = net.connect(port, '127.0.0.1');
        sockets.push(sock);
        await new Promise((r) => sock.once('connect', r));
        sock.write(
          'GET /rmbt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
        );
        sock.pause();
        return sock;
      }),
    );
    // 125-byte pings (the largest a control frame may be), 3 s of them, never reading a pong.
    const ping = encodeFrame(OP_PING, Buffer.alloc(125, 7), true);
    const burst = Buffer.concat(Array(512).fill(ping));
    const t0 = Date.now();
    let written = 0;
    while (Date.now() - t0 < 3000) {
      for (const c of conns)
        if (!c.destroyed && c.writableLength < 1 << 20) {
          c.write(burst);
          written += burst.length;
        }
      await new Promise((r) => setTimeout(r, 5));
    }
    const grew = (process.memoryUsage().rss - before) / 2 ** 20;
    // Each connection's pongs stop at 64 KiB queued: 16 × 64 KiB, not hundreds of MB.
    expect(written).toBeGreaterThan(16 * 1024 * 1024);
    expect(grew).toBeLessThan(64);
    expect(s.pendingConnections + s.activeConnections).toBeLessThanOrEqual(16);
  });
});

describe('our client against a hostile measurement server', () => {
  it('CHUNKSIZE 64 MiB is refused with a coded error before any data', async () => {
    const { clientSettings } = await import('../helpers/rmbt.js');
    const { measureRmbt } = await import('../../src/rmbt/measure.js');
    const fake = net.createServer((s) => {
      s.write('RMBTv1.3.5\nACCEPT TOKEN QUIT\n');
      s.once('data', () =>
        s.write('OK\nCHUNKSIZE 67108864 4096 67108864\nACCEPT GETCHUNKS GETTIME PUT PUTNORESULT PING QUIT\n'),
      );
      s.on('error', () => {});
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    try {
      const port = (fake.address() as net.AddressInfo).port;
      const r = await measureRmbt(
        clientSettings({ server: `127.0.0.1:${port}`, key: KEY, transport: 'plain' }),
        {
          engine: loadEngine('native'),
          general: { data_dir: '/tmp', log_level: 'silent' } as never,
        },
      );
      expect(r.status).toBe('failed');
      expect(r.error!.code).toBe('BP_ERR_PROTOCOL');
      expect(r.error!.message).toMatch(/implausible chunk sizes/);
    } finally {
      fake.close();
    }
  });
});
