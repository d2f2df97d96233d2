import net from 'node:net';
import type { NativeTls } from '../engine/tls.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Channel } from '../net/channel.js';
import { msBetween, openStream, resolveSource, type StreamTiming, TlsConnectError } from '../net/connect.js';
import type { TlsOptions } from '../net/tls.js';
import { newWsKey, wsAccept } from '../net/ws.js';
import { type ChunkLimits, GREETING_VERSION, parseChunkSize, parseGreeting } from './lines.js';
import { ACCEPT_EARLY_S } from './token.js';

/**
 * The four ways a TCP connection becomes an RMBT byte stream (specs/rmbt.md §2), each with or without
 * TLS: plain/tls (server speaks first), http/https (HTTP Upgrade: RMBT), ws/wss (RFC 6455).
 */
export const TRANSPORTS = ['plain', 'tls', 'http', 'https', 'ws', 'wss'] as const;
export type Transport = (typeof TRANSPORTS)[number];

export function usesTls(t: Transport): boolean {
  return t === 'tls' || t === 'https' || t === 'wss';
}

/** The transport for a control server's `test_server_type` and `test_server_encryption` (§6.2). */
export function transportFor(type: string, encryption: boolean): Transport {
  switch (type) {
    case 'RMBT':
      return encryption ? 'tls' : 'plain';
    case 'RMBThttp':
      return encryption ? 'https' : 'http';
    case 'RMBTws':
      return encryption ? 'wss' : 'ws';
    default:
      throw new ProbeError('BP_ERR_RMBT_CONTROL', `unknown test_server_type ${JSON.stringify(type)}`);
  }
}

export function upgradeKind(t: Transport): 'http' | 'ws' | undefined {
  if (t === 'http' || t === 'https') return 'http';
  if (t === 'ws' || t === 'wss') return 'ws';
  return undefined;
}

export interface ConnectOptions {
  host: string;
  port: number;
  transport: Transport;
  ipVersion: 'any' | '4' | '6';
  /** local address or interface name */
  source?: string;
  tls: TlsOptions;
  /**
   * TLS by the native engine's OpenSSL sessions: the bulk phases then stay native. Without it
   * Node's TLS carries the connection and the js engine its bulk phases.
   */
  nativeTls?: NativeTls;
  timeoutMs: number;
  signal?: AbortSignal;
  /**
   * plain/tls only: the control server said `RMBT`, which means a server-first server to RMBTD and the
   * legacy server but an HTTP-Upgrade-only one to the Rust server (F3). Listen first; if no greeting
   * comes within GREETING_WAIT_MS, send the HTTP Upgrade and go on as http/https.
   */
  detectUpgrade?: boolean;
}

/** How long a connection waits for a server-first greeting before it asks for the upgrade (F3). */
export const GREETING_WAIT_MS = 1000;

export type ConnectTiming = StreamTiming;
/** re-exported: RMBT's callers resolve a source address before they connect */
export { resolveSource };

const ms = msBetween;

/**
 * What a port speaks when TLS failed there: a plain RMBT server's greeting (`RMBTv…`, server-first,
 * §2.1), an HTTP status line in answer to a request line, or neither (undefined). One short connection,
 * at most ~2 s; never throws.
 */
async function plainKind(
  host: string,
  port: number,
  localAddress: string | undefined,
  signal: AbortSignal | undefined,
): Promise<'rmbt' | 'http' | undefined> {
  const sock = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
  let got = '';
  sock.on('data', (d: Buffer) => {
    if (got.length < 64) got += d.toString('latin1');
  });
  sock.on('error', () => {});
  const wait = (ms: number, until: () => boolean) =>
    new Promise<void>((r) => {
      const t0 = Date.now();
      const tick = setInterval(() => {
        if (until() || Date.now() - t0 > ms || signal?.aborted) {
          clearInterval(tick);
          r();
        }
      }, 20);
    });
  try {
    await wait(1000, () => !sock.connecting || sock.destroyed);
    if (sock.destroyed || sock.connecting) return undefined;
    await wait(600, () => got.length >= 5);
    if (got.startsWith('RMBTv')) return 'rmbt';
    if (!got) {
      sock.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      await wait(800, () => got.length >= 5);
    }
    return got.startsWith('HTTP/') ? 'http' : undefined;
  } finally {
    sock.destroy();
  }
}

/** Opens the TCP (and TLS) connection and performs the HTTP or WebSocket upgrade; no RMBT yet. */
export async function openTransport(o: ConnectOptions): Promise<{ channel: Channel; timing: ConnectTiming }> {
  let opened: Awaited<ReturnType<typeof openStream>>;
  try {
    opened = await openStream({ ...o, tls: usesTls(o.transport) ? o.tls : undefined });
  } catch (err) {
    const e = toProbeError(err);
    if (!(err instanceof TlsConnectError)) throw e;
    // A TLS transport on a plain port times out (HTTP servers wait for a request line) or fails on
    // the first bytes (a plain RMBT server greets first): say which port it is.
    const plain = await plainKind(o.host, o.port, resolveSource(o.source, o.ipVersion), o.signal);
    if (plain) {
      const use = plain === 'rmbt' ? 'plain' : o.transport === 'wss' ? 'ws' : 'http';
      // a wrong setting, not a certificate problem: BP_ERR_CONFIG says so
      throw new ProbeError(
        'BP_ERR_CONFIG',
        `port ${o.port} speaks ${plain === 'rmbt' ? 'plain RMBT' : 'plain HTTP'}, not TLS: use --transport ${use} (transport: ${use} in a target); the TLS handshake ${e.code === 'BP_ERR_TIMEOUT' ? 'timed out' : 'failed'}`,
      );
    }
    throw e;
  }
  const { channel, timing } = opened;
  const abort = () => channel.close();
  o.signal?.addEventListener('abort', abort, { once: true });
  try {
    const upgrade = upgradeKind(o.transport);
    if (upgrade) {
      const t2 = process.hrtime.bigint();
      if (upgrade === 'http') await upgradeHttp(channel, o);
      else await upgradeWs(channel, o);
      timing.upgrade_ms = ms(t2, process.hrtime.bigint());
    }
  } catch (err) {
    channel.close();
    throw err;
  } finally {
    o.signal?.removeEventListener('abort', abort);
  }
  return { channel, timing };
}

function hostHeader(o: ConnectOptions): string {
  return `${net.isIPv6(o.host) ? `[${o.host}]` : o.host}:${o.port}`;
}

/** §2.3: exactly the lines PYC sends; no pipelining (RMBTD reads the request with a single read). */
async function upgradeHttp(ch: Channel, o: ConnectOptions): Promise<void> {
  ch.writeRaw(
    Buffer.from(
      `GET /rmbt HTTP/1.1\r\nHost: ${hostHeader(o)}\r\nConnection: Upgrade\r\nUpgrade: RMBT\r\nRMBT-Version: ${GREETING_VERSION}\r\n\r\n`,
      'latin1',
    ),
  );
  const head = await ch.readHttpHead(o.timeoutMs).catch((err: ProbeError) => {
    throw err.code === 'BP_ERR_PEER_CLOSED'
      ? new ProbeError('BP_ERR_HTTP_UPGRADE', 'the server closed instead of answering the upgrade')
      : err;
  });
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (status?.[1] !== '101' || !/^upgrade:\s*rmbt\s*$/im.test(head)) {
    throw new ProbeError(
      'BP_ERR_HTTP_UPGRADE',
      `server answered ${JSON.stringify(head.split('\r\n')[0] ?? '')}`,
    );
  }
}

/** §2.4: header names in RMBTD's exact casing, no Sec-WebSocket-Protocol (it makes RMBTD fail). */
async function upgradeWs(ch: Channel, o: ConnectOptions): Promise<void> {
  const key = newWsKey();
  ch.writeRaw(
    Buffer.from(
      `GET /rmbt HTTP/1.1\r\nHost: ${hostHeader(o)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      'latin1',
    ),
  );
  const head = await ch.readHttpHead(o.timeoutMs).catch((err: ProbeError) => {
    throw err.code === 'BP_ERR_PEER_CLOSED'
      ? new ProbeError(
          'BP_ERR_HTTP_UPGRADE',
          'the server closed instead of answering the WebSocket handshake',
        )
      : err;
  });
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  const accept = /^sec-websocket-accept:\s*(\S+)\s*$/im.exec(head)?.[1];
  if (status?.[1] !== '101')
    throw new ProbeError(
      'BP_ERR_HTTP_UPGRADE',
      `server answered ${JSON.stringify(head.split('\r\n')[0] ?? '')}`,
    );
  if (accept !== wsAccept(key)) throw new ProbeError('BP_ERR_HTTP_UPGRADE', 'wrong Sec-WebSocket-Accept');
  ch.enableWs('client');
}

export interface RmbtConnection {
  channel: Channel;
  /** the transport the connection really uses (http/https when `detectUpgrade` had to upgrade) */
  transport: Transport;
  timing: ConnectTiming & { ready_ms: number };
  version: string;
  chunk: ChunkLimits;
}

/**
 * Full connection preamble (§3.1): greeting, ACCEPT TOKEN, TOKEN, OK, CHUNKSIZE, ACCEPT. A silent close
 * or ERR right after TOKEN means the token was refused (RMBTD closes without a word, RUSTD says ERR).
 */
export async function connectRmbt(o: ConnectOptions, token: string): Promise<RmbtConnection> {
  const t0 = process.hrtime.bigint();
  const { channel, timing } = await openTransport(o);
  const abort = () => channel.close();
  o.signal?.addEventListener('abort', abort, { once: true });
  try {
    let transport = o.transport;
    if (o.detectUpgrade && !upgradeKind(transport) && !(await channel.hasData(GREETING_WAIT_MS))) {
      const t1 = process.hrtime.bigint();
      await upgradeHttp(channel, o);
      timing.upgrade_ms = ms(t1, process.hrtime.bigint());
      transport = usesTls(transport) ? 'https' : 'http';
    }
    const version = parseGreeting(await channel.readLine(o.timeoutMs));
    const accept = await channel.readLine(o.timeoutMs);
    if (!accept.startsWith('ACCEPT') || !accept.includes('TOKEN')) {
      throw new ProbeError(
        'BP_ERR_PROTOCOL',
        `expected ACCEPT TOKEN, got ${JSON.stringify(accept.slice(0, 80))}`,
      );
    }
    channel.writeLine(`TOKEN ${token}`);
    // The server sleeps until the token's start when it is early (up to 20 s, §3.1 "Time window").
    const ok = await channel.readLine(o.timeoutMs + ACCEPT_EARLY_S * 1000).catch((err: ProbeError) => {
      throw err.code === 'BP_ERR_PEER_CLOSED'
        ? new ProbeError('BP_ERR_RMBT_TOKEN', 'the server closed the connection after TOKEN')
        : err;
    });
    // `ERR BUSY …` is our server's answer when its slots are full (a distinct cause from a bad token).
    if (/^ERR BUSY\b/.test(ok))
      throw new ProbeError('BP_ERR_RMBT_BUSY', `the server is busy: ${ok.slice(9, 200) || 'no free slot'}`);
    if (ok === 'ERR') throw new ProbeError('BP_ERR_RMBT_TOKEN', 'the server answered ERR to TOKEN');
    if (ok !== 'OK')
      throw new ProbeError(
        'BP_ERR_PROTOCOL',
        `expected OK after TOKEN, got ${JSON.stringify(ok.slice(0, 80))}`,
      );
    const chunk = parseChunkSize(await channel.readLine(o.timeoutMs));
    const next = await channel.readLine(o.timeoutMs);
    if (!next.startsWith('ACCEPT'))
      throw new ProbeError('BP_ERR_PROTOCOL', `expected ACCEPT, got ${JSON.stringify(next.slice(0, 80))}`);
    const ready_ms = ms(t0, process.hrtime.bigint());
    return { channel, transport, timing: { ...timing, ready_ms }, version, chunk };
  } catch (err) {
    channel.close();
    throw toProbeError(err);
  } finally {
    o.signal?.removeEventListener('abort', abort);
  }
}
