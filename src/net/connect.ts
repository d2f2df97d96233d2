import net from 'node:net';
import { networkInterfaces } from 'node:os';
import tls from 'node:tls';
import { type NativeTls, nodeCiphers } from '../engine/tls.js';
import { ProbeError, toProbeError } from '../errors.js';
import { Channel } from './channel.js';
import type { TlsOptions } from './tls.js';

/**
 * A TCP connection, with TLS on top when asked, as a Channel: what every protocol's client opens before
 * it speaks its own handshake (an RMBT greeting, an HTTP upgrade, a WebSocket handshake).
 */
export interface StreamOptions {
  host: string;
  port: number;
  ipVersion: 'any' | '4' | '6';
  /** local address or interface name */
  source?: string;
  /** TLS with these checks; absent for plain TCP */
  tls?: TlsOptions | undefined;
  /**
   * TLS by the native engine's OpenSSL sessions: the bulk phases then stay native. Without it Node's
   * TLS carries the connection and the js engine its bulk phases.
   */
  nativeTls?: NativeTls | undefined;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

export interface StreamTiming {
  connect_ms: number;
  tls_ms?: number;
  upgrade_ms?: number;
}

/** The TLS handshake failed (the caller may look at what the port speaks instead). */
export class TlsConnectError extends ProbeError {
  constructor(cause: ProbeError) {
    super(cause.code, cause.message);
  }
}

export const msBetween = (from: bigint, to: bigint) => Math.round(Number(to - from) / 1e3) / 1e3;

/** An interface name resolves to its first address of the wanted family; anything else is taken as an address. */
export function resolveSource(source: string | undefined, ipVersion: 'any' | '4' | '6'): string | undefined {
  if (!source) return undefined;
  if (net.isIP(source)) return source;
  const addrs = networkInterfaces()[source];
  if (!addrs?.length)
    throw new ProbeError(
      'BP_ERR_CONFIG',
      `source_address ${source} is neither an IP address nor an interface`,
    );
  const pick = addrs.find((a) => ipVersion === 'any' || a.family === `IPv${ipVersion}`);
  if (!pick) throw new ProbeError('BP_ERR_CONFIG', `interface ${source} has no IPv${ipVersion} address`);
  return pick.address;
}

/** Waits for `ok` on a connecting socket, turning errors, close, timeout and abort into coded errors. */
export function awaitSocket(
  emitter: net.Socket,
  ok: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => done(new ProbeError('BP_ERR_TIMEOUT', `${what} took longer than ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onOk = () => done();
    const onErr = (err: Error) => done(toProbeError(err, 'BP_ERR_CONNECT'));
    const onClose = () => done(new ProbeError('BP_ERR_PEER_CLOSED', `closed during ${what}`));
    const onAbort = () => done(new ProbeError('BP_ERR_ABORTED'));
    function done(err?: ProbeError) {
      clearTimeout(timer);
      emitter.off(ok, onOk).off('error', onErr).off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
      if (err) {
        emitter.destroy();
        reject(err);
      } else resolve();
    }
    if (signal?.aborted) return onAbort();
    emitter.once(ok, onOk).once('error', onErr).once('close', onClose);
    signal?.addEventListener('abort', onAbort);
  });
}

/** Opens the TCP connection and, with `tls`, the TLS session over it; nothing of any protocol yet. */
export async function openStream(o: StreamOptions): Promise<{ channel: Channel; timing: StreamTiming }> {
  const t0 = process.hrtime.bigint();
  const literal = net.isIP(o.host);
  if (literal && o.ipVersion !== 'any' && literal !== Number(o.ipVersion)) {
    throw new ProbeError(
      'BP_ERR_CONFIG',
      `${o.host} is an IPv${literal} address but ip_version is ${o.ipVersion}`,
    );
  }
  const localAddress = resolveSource(o.source, o.ipVersion);
  const sock = net.connect({
    host: o.host,
    port: o.port,
    family: o.ipVersion === 'any' ? 0 : Number(o.ipVersion),
    ...(localAddress ? { localAddress } : {}),
  });
  await awaitSocket(sock, 'connect', o.timeoutMs, o.signal, 'TCP connect');
  const t1 = process.hrtime.bigint();
  const timing: StreamTiming = { connect_ms: msBetween(t0, t1) };
  if (!o.tls) return { channel: new Channel(sock), timing };
  let channel: Channel;
  try {
    channel = o.nativeTls
      ? await nativeTlsChannel(sock, o, o.nativeTls)
      : await nodeTlsChannel(sock, o, o.tls);
  } catch (err) {
    const e = toProbeError(err);
    if (e.code === 'BP_ERR_ABORTED' || e.code === 'BP_ERR_CONFIG') throw e;
    throw new TlsConnectError(e);
  }
  timing.tls_ms = msBetween(t1, process.hrtime.bigint());
  return { channel, timing };
}

/**
 * One OpenSSL session for the whole connection, checked as strictly as Node's TLS: the same host rules,
 * roots, TLS >= 1.2 and cipher order (src/engine/tls.ts).
 */
async function nativeTlsChannel(sock: net.Socket, o: StreamOptions, nativeTls: NativeTls): Promise<Channel> {
  const ch = new Channel(sock, nativeTls.client(o.host, o.tls!));
  const abort = () => ch.close();
  if (o.signal?.aborted) abort();
  o.signal?.addEventListener('abort', abort, { once: true });
  try {
    await ch.tlsHandshake(o.timeoutMs);
    return ch;
  } catch (err) {
    ch.close();
    throw o.signal?.aborted ? new ProbeError('BP_ERR_ABORTED') : err;
  } finally {
    o.signal?.removeEventListener('abort', abort);
  }
}

async function nodeTlsChannel(sock: net.Socket, o: StreamOptions, t: TlsOptions): Promise<Channel> {
  const secure = tls.connect({
    socket: sock,
    // `host` is what the certificate is checked against: without it Node checks a socket it did not
    // open against "localhost", so any localhost certificate passed for any IP. With it an IP is
    // matched against the certificate's IP SANs, as for connections Node opens itself.
    host: o.host,
    servername: net.isIP(o.host) ? undefined : o.host,
    // whether to check at all is the protocol's call (an RMBT token authenticates the test)
    rejectUnauthorized: !t.insecure,
    ...(t.ca ? { ca: [...tls.rootCertificates, t.ca.toString()] } : {}),
    minVersion: 'TLSv1.2',
    // the order the native sessions offer: fastest AEAD on this CPU first (src/engine/tls.ts)
    ciphers: nodeCiphers(),
  });
  await awaitSocket(secure, 'secureConnect', o.timeoutMs, o.signal, 'TLS handshake');
  return new Channel(secure);
}
