import { createCipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { ProbeError } from '../errors.js';

/**
 * Native TLS (native/tls.h): one OpenSSL session per stream, owned by the addon, for the whole
 * connection. TypeScript feeds it the ciphertext Node reads and sends the ciphertext it makes while the
 * protocol runs; a bulk phase hands the session and the socket to the native loop, which decrypts and
 * encrypts on the stream's own thread.
 */
export interface NativeTlsSession {
  /** true once the handshake finished; throws `BP_ERR_…: text` when it failed */
  handshake(): boolean;
  /** ciphertext Node read; null when the TCP stream ended */
  feed(buf: Buffer | null): void;
  /** plaintext of all complete records fed so far; null once the peer closed the TLS session */
  read(): Buffer | null;
  write(buf: Buffer): void;
  /** ciphertext to send, if any */
  takeOut(): Buffer | undefined;
  info(): { version?: string; cipher?: string };
  shutdown(): void;
  free(): void;
}

export interface NativeTlsAddon {
  TlsContext: new (o: Record<string, unknown>) => object;
  TlsSession: new (ctx: object, host?: string) => NativeTlsSession;
  tlsAvailable(): { ok: boolean; why?: string };
}

/** How a client checks the server (the same rules as the js path in src/rmbt/transport.ts). */
export interface TlsClientOptions {
  insecure: boolean;
  ca?: string | Buffer;
}

export interface TlsServerOptions {
  cert: string | Buffer;
  key: string | Buffer;
}

/** The TLS 1.3 suites and TLS 1.2 ciphers we offer, fastest on this CPU first. */
export interface CipherOrder {
  prefer: 'aes' | 'chacha';
  /** why: the CPU's flags and what a short encryption of each cost here */
  reason: string;
  suites: string;
  list: string;
}

const AES_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'];
const CHACHA_SUITES = ['TLS_CHACHA20_POLY1305_SHA256'];
const AES_12 = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
];
const CHACHA_12 = ['ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305'];

/** Whether /proc/cpuinfo lists AES instructions (x86 `aes` flag, ARM `aes` feature); undefined if unknown. */
export function cpuHasAes(cpuinfo?: string): boolean | undefined {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const line = /^(flags|Features)\s*:(.*)$/m.exec(text);
  return line ? /(^|\s)aes(\s|$)/.test(line[2]!) : undefined;
}

/** Seconds one AEAD pass over `buf` takes in this process's OpenSSL. */
function aeadOnce(alg: 'aes-128-gcm' | 'chacha20-poly1305', buf: Buffer): number {
  const key = randomBytes(alg === 'aes-128-gcm' ? 16 : 32);
  const t0 = process.hrtime.bigint();
  const c = createCipheriv(alg, key, randomBytes(12), { authTagLength: 16 } as never);
  c.update(buf);
  c.final();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/**
 * Best of five passes of each AEAD, interleaved (after one warm-up each), so a busy moment costs both
 * alike instead of one of them.
 */
function aeadSeconds(buf: Buffer): { aes: number; chacha: number } {
  aeadOnce('aes-128-gcm', buf);
  aeadOnce('chacha20-poly1305', buf);
  let aes = Number.POSITIVE_INFINITY;
  let chacha = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 5; i++) {
    aes = Math.min(aes, aeadOnce('aes-128-gcm', buf));
    chacha = Math.min(chacha, aeadOnce('chacha20-poly1305', buf));
  }
  return { aes, chacha };
}

/**
 * ChaCha20 goes first only when it is clearly faster: near a tie, AES-GCM (what servers expect). Where
 * AES is really missing ChaCha20 is 2.4-3 times faster (a masked x86, qemu, a Cortex-A72); with AES-NI
 * here they are within 10 % and a busy core once flipped a 1.25 margin.
 */
const CHACHA_MARGIN = 1.5;

/**
 * Orders ciphers for this CPU. An OpenSSL server without server preference (RMBTD, our server on both
 * engines) takes the client's first choice, so this decides what the crypto costs; a server that
 * prefers its own order (Node's default) picks from ours by its own. Where OpenSSL has AES instructions
 * AES-GCM is as fast as ChaCha20-Poly1305 or faster; without them (a Raspberry Pi 4's Cortex-A72) it is
 * several times slower. A CPU whose /proc/cpuinfo lists no `aes` gets ChaCha20 first. One that does
 * has both AEADs timed once over 1 MiB in this process — what OpenSSL really does here, including an
 * `OPENSSL_ia32cap` mask — and ChaCha20 goes first only if it is CHACHA_MARGIN times faster.
 * `BANDWIDTH_PROBE_TLS_PREFER=aes|chacha` decides instead (bench/).
 */
export function cipherOrder(env: NodeJS.ProcessEnv = process.env): CipherOrder {
  const forced = env.BANDWIDTH_PROBE_TLS_PREFER;
  const aes = cpuHasAes();
  const flag = aes === undefined ? 'cpu flags unknown' : aes ? 'cpu has aes' : 'cpu has no aes';
  let prefer: 'aes' | 'chacha';
  let reason: string;
  if (forced === 'aes' || forced === 'chacha') {
    prefer = forced;
    reason = `BANDWIDTH_PROBE_TLS_PREFER=${forced}; ${flag}`;
  } else if (aes === false) {
    prefer = 'chacha';
    reason = flag;
  } else {
    const buf = randomBytes(1024 * 1024);
    const { aes: a, chacha: c } = aeadSeconds(buf);
    prefer = a > c * CHACHA_MARGIN ? 'chacha' : 'aes';
    const mbps = (s: number) => Math.round((buf.length * 8) / s / 1e6);
    reason = `${flag}; AES-128-GCM ${mbps(a)} Mbit/s, ChaCha20-Poly1305 ${mbps(c)} Mbit/s on one core`;
  }
  const [s1, s2, l1, l2] =
    prefer === 'aes'
      ? [AES_SUITES, CHACHA_SUITES, AES_12, CHACHA_12]
      : [CHACHA_SUITES, AES_SUITES, CHACHA_12, AES_12];
  // Node's default list after ours, so a server that takes none of these still finds what Node offers.
  const rest = tls.DEFAULT_CIPHERS.split(':').filter((c) => c && !c.startsWith('TLS_'));
  return {
    prefer,
    reason,
    suites: [...s1, ...s2].join(':'),
    list: [...new Set([...l1, ...l2, ...rest])].join(':'),
  };
}

let order: CipherOrder | undefined;
let orderFor: string | undefined;
/** The cipher order of this process (decided once, again only if BANDWIDTH_PROBE_TLS_PREFER changes). */
export function processCipherOrder(): CipherOrder {
  const want = process.env.BANDWIDTH_PROBE_TLS_PREFER ?? '';
  if (!order || orderFor !== want) {
    order = cipherOrder();
    orderFor = want;
  }
  return order;
}

/** Node's `ciphers` option with the same order, so the js path offers what the native one does. */
export function nodeCiphers(o: CipherOrder = processCipherOrder()): string {
  return `${o.suites}:${o.list}`;
}

/** Roots a verifying client trusts: Node's bundled roots, NODE_EXTRA_CA_CERTS (as Node does), tls_ca. */
function roots(ca: string | Buffer | undefined): string[] {
  const out = [...tls.rootCertificates];
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      out.push(readFileSync(extra, 'utf8'));
    } catch {
      // Node itself only warns about an unreadable file; so do we, by leaving it out
    }
  }
  if (ca) out.push(ca.toString());
  return out;
}

/** Turns the addon's `BP_ERR_X: text` errors into coded errors. */
export function nativeTlsError(err: unknown): ProbeError {
  const msg = (err as Error)?.message ?? String(err);
  const m = /^(BP_ERR_[A-Z0-9_]+): ([\s\S]*)$/.exec(msg);
  return m ? new ProbeError(m[1] as never, m[2]!) : new ProbeError('BP_ERR_TLS', msg);
}

/** The native TLS stack of one loaded addon: contexts are made once per setting and shared. */
export class NativeTls {
  private readonly contexts = new Map<string, object>();

  constructor(private readonly addon: NativeTlsAddon) {}

  /** A client session for `host` (a name, or an IP checked against IP SANs). */
  client(host: string, o: TlsClientOptions): NativeTlsSession {
    const ord = processCipherOrder();
    const ca = o.ca?.toString() ?? '';
    const key = `c|${o.insecure}|${ord.prefer}|${ca}`;
    let ctx = this.contexts.get(key);
    try {
      if (!ctx) {
        ctx = new this.addon.TlsContext({
          server: false,
          verify: !o.insecure,
          ...(o.insecure ? {} : { roots: roots(o.ca) }),
          ciphersuites: ord.suites,
          cipherList: ord.list,
        });
        if (this.contexts.size > 8) this.contexts.clear();
        this.contexts.set(key, ctx);
      }
      return new this.addon.TlsSession(ctx, host);
    } catch (err) {
      throw nativeTlsError(err);
    }
  }

  /** A server context for a certificate and key (made once per pair; throws BP_ERR_CONFIG). */
  serverContext(o: TlsServerOptions): object {
    const key = `s|${o.cert.toString()}|${o.key.toString()}`;
    let ctx = this.contexts.get(key);
    if (!ctx) {
      try {
        ctx = new this.addon.TlsContext({ server: true, cert: o.cert.toString(), key: o.key.toString() });
      } catch (err) {
        throw nativeTlsError(err);
      }
      this.contexts.set(key, ctx);
    }
    return ctx;
  }

  server(ctx: object): NativeTlsSession {
    try {
      return new this.addon.TlsSession(ctx);
    } catch (err) {
      throw nativeTlsError(err);
    }
  }
}
