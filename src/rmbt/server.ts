import net from 'node:net';
import tls from 'node:tls';
import type { Engine, StreamOutcome } from '../engine/types.js';
import { type ErrorCode, ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { InboundDirection, InboundReport } from '../measure/inbound.js';
import { type Point, withEnd } from '../measure/speed.js';
import { Channel } from '../net/channel.js';
import type { Quota } from '../net/quota.js';
import { wsAccept } from '../net/ws.js';
import { type SessionFigures, type SessionLimits, serveSession } from './session.js';

/**
 * Our RMBT measurement server. A listener is either `plain` (the server speaks first, legacy RMBT) or
 * `http` (the client sends an HTTP Upgrade to RMBT or to WebSocket, §2.3/§2.4), each with or without TLS.
 */
export interface ListenerSpec {
  port: number;
  tls: boolean;
  mode: 'plain' | 'http';
}

export interface RmbtServerOptions extends Omit<SessionLimits, 'onToken' | 'onJob' | 'account'> {
  host: string;
  listeners: readonly ListenerSpec[];
  tlsCreds?: { cert: string; key: string };
  /** measuring connections (past a valid token) at once; more are answered `ERR BUSY` */
  maxConnections: number;
  /** measuring connections one token may hold at once; 0 = its grant + 1 (ours) or DEFAULT_PER_TOKEN */
  maxPerToken?: number;
  /** measuring connections from one source address at once (default: maxConnections) */
  maxPerAddress?: number;
  /** how long a measuring connection may last (default sessionLimitMs(maxDuration); tests set less) */
  sessionMs?: number;
  /** a connection must present a valid token within this time (TLS and HTTP upgrade included) */
  handshakeTimeoutMs: number;
  engine: Engine;
  log?: Logger;
  /** daily per-address and total budgets: a new test's token is refused past them */
  quota?: Quota;
  /** every test (the connections of one token), once its last connection closed */
  onTest?: (report: InboundReport) => void;
  /** how long a test waits after its last connection closed for another with its token (default 2 s) */
  testLingerMs?: number;
}

/**
 * One test as the server sees it: every connection that presented the same token. A
 * connection's bulk commands become one series per direction and kind, each command's points shifted
 * to follow the previous one's.
 */
interface Test {
  uuid: string;
  address: string;
  peerPort: number;
  localPort: number;
  transports: Set<string>;
  startedAt: Date;
  live: number;
  connections: number;
  pings: number;
  sent: number;
  received: number;
  kinds: Set<'native' | 'js'>;
  /** per command kind, per connection: the joined series and its total */
  series: Map<string, Map<number, { points: Point[]; bytes: number; t: number }>>;
  error?: { code: ErrorCode; message: string };
  quotaEnded: boolean;
  linger?: NodeJS.Timeout;
}

/** Tests followed at once (a flood of tokens cannot grow the map past it; the oldest is reported). */
const MAX_TESTS = 1000;

export interface BoundListener extends ListenerSpec {
  /** the port actually bound (port 0 picks one) */
  port: number;
}

/** Connections still in their handshake, per allowed measuring connection (at least 256 in all). */
const PENDING_PER_CONNECTION = 4;
const MIN_PENDING = 256;

/** Handshaking connections one address may hold; past it, that address's own oldest one is dropped. */
export const PENDING_PER_ADDRESS = 64;
/** Per-token cap for tokens we did not issue (direct mode, another control server): 20 threads + 1. */
export const DEFAULT_PER_TOKEN = 21;
/** Grants remembered from our control server (older ones are dropped first). */
const MAX_GRANTS = 10_000;

/**
 * How long one measuring connection may last after its token: pre-tests, pings, a download and an
 * upload of at most max_duration each, plus slack. A connection past that is closed, so a token cannot
 * hold a slot for as long as its client likes.
 */
export function sessionLimitMs(maxDuration: number): number {
  return (2 * maxDuration + 30) * 1000;
}

interface Entry {
  socket: net.Socket;
  address: string;
  timer?: NodeJS.Timeout;
  uuid?: string;
}

/**
 * Admission in two stages, so connections that never measure cannot lock out ones that do: a new
 * connection is *pending* until it presents a valid token, with its own deadline (handshake_timeout) and
 * its own cap (when full, the oldest pending one is dropped — a real client finishes its handshake in
 * milliseconds, an idle or half-open one does not); only a connection past its token takes one of the
 * max_connections measuring slots. Connections are keyed by their TCP peer address, which is the same
 * for a TLS socket and the TCP socket under it.
 */
export class RmbtServer {
  private servers: net.Server[] = [];
  private pending = new Map<string, Entry>();
  private active = new Map<string, Entry>();
  private bound: BoundListener[] = [];
  /** live measuring connections per token uuid and per source address */
  private perToken = new Map<string, number>();
  private perAddress = new Map<string, number>();
  /** threads our control server granted per token uuid (the per-token cap is that + 1) */
  private grants = new Map<string, number>();
  /** tests in progress (and lingering after their last connection) by token uuid */
  private tests = new Map<string, Test>();
  private connSeq = 0;
  /** counters for tests and the status page */
  readonly stats = {
    /** tests refused or ended by a daily quota */
    quota: 0,
    accepted: 0,
    refused: 0,
    sessions: 0,
    failed: 0,
    evicted: 0,
    handshakeTimeouts: 0,
    sessionTimeouts: 0,
  };

  constructor(private readonly o: RmbtServerOptions) {}

  get listeners(): readonly BoundListener[] {
    return this.bound;
  }

  portOf(mode: 'plain' | 'http', useTls: boolean): number | undefined {
    return this.bound.find((l) => l.mode === mode && l.tls === useTls)?.port;
  }

  /** connections in a measurement session (past their token) */
  get activeConnections(): number {
    return this.active.size;
  }

  /** connections still in their handshake */
  get pendingConnections(): number {
    return this.pending.size;
  }

  private get maxPending(): number {
    return Math.max(MIN_PENDING, this.o.maxConnections * PENDING_PER_CONNECTION);
  }

  /** The native TLS context for the TLS listeners, when the engine has native TLS. */
  private tlsCtx: object | undefined;

  async start(): Promise<void> {
    for (const spec of this.o.listeners) {
      if (spec.tls && !this.o.tlsCreds)
        throw new ProbeError('BP_ERR_CONFIG', 'a TLS listener needs a certificate');
      // With native TLS a TLS port is a TCP port whose connections get a native session: the bulk
      // phases then run on the native loop's threads, not on Node's TLS on this one.
      const native = spec.tls && this.o.engine.tls !== undefined;
      if (native) this.tlsCtx ??= this.o.engine.tls!.serverContext(this.o.tlsCreds!);
      const server =
        spec.tls && !native
          ? tls.createServer({
              cert: this.o.tlsCreds!.cert,
              key: this.o.tlsCreds!.key,
              minVersion: 'TLSv1.2',
              // The client's cipher order wins, as on the native sessions: it knows what its CPU is
              // fast at (Node's server otherwise prefers its own order, AES-256-GCM first).
              honorCipherOrder: false,
              handshakeTimeout: this.o.handshakeTimeoutMs,
            })
          : net.createServer();
      const event = spec.tls && !native ? 'secureConnection' : 'connection';
      server.on(event, (s: net.Socket) => this.accept(s, spec, native));
      // Half-open TLS handshakes are bounded by handshakeTimeout and by the pending cap.
      server.on('tlsClientError', (err: Error) =>
        this.o.log?.debug({ err: err.message }, 'TLS handshake failed'),
      );
      server.on('error', (err) => this.o.log?.error({ err: err.message }, 'listener error'));
      // TLS connections are admitted as TCP sockets, so their handshake counts as pending too.
      if (spec.tls && !native) server.on('connection', (s: net.Socket) => this.admit(s));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(spec.port, this.o.host, () => {
          server.off('error', reject);
          resolve();
        });
      }).catch((err) => {
        throw toProbeError(err, 'BP_ERR_CONFIG');
      });
      const addr = server.address() as net.AddressInfo;
      this.bound.push({ ...spec, port: addr.port });
      this.servers.push(server);
    }
    this.o.log?.info({ host: this.o.host, listeners: this.bound }, 'RMBT measurement server listening');
  }

  private static key(s: net.Socket): string {
    return `${s.remoteAddress}|${s.remotePort}`;
  }

  /** Our control server issued a token for `threads` streams: that token may hold threads + 1 slots. */
  grant(uuid: string, threads: number): void {
    this.grants.set(uuid, threads);
    if (this.grants.size > MAX_GRANTS) this.grants.delete(this.grants.keys().next().value!);
  }

  private evict(key: string, entry: Entry): void {
    this.pending.delete(key);
    clearTimeout(entry.timer);
    this.stats.evicted++;
    entry.socket.destroy();
  }

  /**
   * A new TCP connection joins the pending ones. When they are full the oldest is dropped; when one
   * address holds PENDING_PER_ADDRESS of them, that address's own oldest is dropped (a flood from one
   * host evicts only itself).
   */
  private admit(s: net.Socket): void {
    const key = RmbtServer.key(s);
    if (this.pending.has(key) || this.active.has(key)) return;
    const address = s.remoteAddress ?? '';
    let mine = 0;
    let myOldest: [string, Entry] | undefined;
    for (const kv of this.pending) {
      if (kv[1].address !== address) continue;
      mine++;
      myOldest ??= kv;
    }
    if (myOldest && mine >= PENDING_PER_ADDRESS) this.evict(...myOldest);
    else if (this.pending.size >= this.maxPending)
      this.evict(...(this.pending.entries().next().value as [string, Entry]));
    const entry: Entry = { socket: s, address };
    entry.timer = setTimeout(() => {
      if (this.pending.get(key) !== entry) return;
      this.stats.handshakeTimeouts++;
      s.destroy();
    }, this.o.handshakeTimeoutMs);
    entry.timer.unref();
    this.pending.set(key, entry);
    s.once('close', () => {
      clearTimeout(entry.timer);
      if (this.pending.get(key) === entry) this.pending.delete(key);
      if (this.active.get(key) === entry) {
        this.active.delete(key);
        dec(this.perAddress, entry.address);
        if (entry.uuid) {
          dec(this.perToken, entry.uuid);
          this.leaveTest(entry.uuid);
        }
      }
    });
  }

  /**
   * A valid token moves a connection to a measuring slot, for at most sessionLimitMs. Returns why not
   * when the server's, the token's or the address's slots are taken.
   */
  private promote(s: net.Socket, uuid: string): string | undefined {
    const key = RmbtServer.key(s);
    const entry = this.pending.get(key);
    if (!entry) return 'the connection is no longer known';
    this.pending.delete(key);
    clearTimeout(entry.timer);
    const tokenCap =
      this.o.maxPerToken || (this.grants.has(uuid) ? this.grants.get(uuid)! + 1 : DEFAULT_PER_TOKEN);
    const addressCap = this.o.maxPerAddress ?? this.o.maxConnections;
    const busy =
      this.active.size >= this.o.maxConnections
        ? `all ${this.o.maxConnections} measurement slots are taken`
        : (this.perToken.get(uuid) ?? 0) >= tokenCap
          ? `this token already holds ${tokenCap} connections`
          : (this.perAddress.get(entry.address) ?? 0) >= addressCap
            ? `this address already holds ${addressCap} connections`
            : undefined;
    if (busy) {
      this.stats.refused++;
      return busy;
    }
    // A daily quota is checked when a test begins (its first connection), never in the middle of one.
    const known = this.tests.get(uuid);
    if (!known && this.o.quota?.active) {
      const over = this.o.quota.check(entry.address);
      if (over) {
        this.stats.refused++;
        this.stats.quota++;
        return `daily quota: ${over.message}`;
      }
      this.o.quota.begin(entry.address);
    }
    this.joinTest(uuid, entry, s);
    entry.uuid = uuid;
    this.active.set(key, entry);
    inc(this.perToken, uuid);
    inc(this.perAddress, entry.address);
    entry.timer = setTimeout(() => {
      this.stats.sessionTimeouts++;
      this.o.log?.info(
        { event: 'session_timeout', peer: `${entry.address}:${s.remotePort}`, uuid },
        'RMBT connection closed: past its test time',
      );
      s.destroy();
    }, this.o.sessionMs ?? sessionLimitMs(this.o.maxDuration));
    entry.timer.unref();
    return undefined;
  }

  /** Tests are followed when they are reported or counted against a quota. */
  private get followsTests(): boolean {
    return this.o.onTest !== undefined || this.o.quota?.active === true;
  }

  private joinTest(uuid: string, entry: Entry, s: net.Socket): void {
    if (!this.followsTests) return;
    let t = this.tests.get(uuid);
    if (!t) {
      if (this.tests.size >= MAX_TESTS) {
        const [oldest] = this.tests.keys();
        this.finishTest(oldest!);
      }
      t = {
        uuid,
        address: entry.address,
        peerPort: s.remotePort ?? 0,
        localPort: s.localPort ?? 0,
        transports: new Set(),
        startedAt: new Date(),
        live: 0,
        connections: 0,
        pings: 0,
        sent: 0,
        received: 0,
        kinds: new Set(),
        series: new Map(),
        quotaEnded: false,
      };
      this.tests.set(uuid, t);
    }
    clearTimeout(t.linger);
    t.linger = undefined;
    t.live++;
    t.connections++;
  }

  private leaveTest(uuid: string): void {
    const t = this.tests.get(uuid);
    if (!t) return;
    t.live--;
    if (t.live > 0) return;
    t.linger = setTimeout(() => this.finishTest(uuid), this.o.testLingerMs ?? 2000);
    t.linger.unref();
  }

  /** A bulk command of a connection of test `uuid` ended: its points join that connection's series. */
  private noteJob(
    uuid: string | undefined,
    conn: number,
    cmd: string,
    out: StreamOutcome,
    kind: 'native' | 'js',
  ): void {
    const t = uuid ? this.tests.get(uuid) : undefined;
    if (!t) return;
    t.kinds.add(kind);
    if (cmd === 'GETCHUNKS' || cmd === 'GETTIME') t.sent += out.bytes;
    else t.received += out.bytes;
    const byConn = t.series.get(cmd) ?? new Map<number, { points: Point[]; bytes: number; t: number }>();
    t.series.set(cmd, byConn);
    const acc = byConn.get(conn) ?? { points: [], bytes: 0, t: 0 };
    byConn.set(conn, acc);
    for (const p of withEnd(out.points, out.bytes, out.endNs))
      acc.points.push({ t: acc.t + p.t, b: acc.bytes + p.b });
    acc.t += out.endNs;
    acc.bytes += out.bytes;
  }

  private finishTest(uuid: string): void {
    const t = this.tests.get(uuid);
    if (!t) return;
    this.tests.delete(uuid);
    clearTimeout(t.linger);
    const dir = (main: string, pre: string): InboundDirection | undefined => {
      // The measurement's own command if there was one (GETTIME, PUT), else the pre-test's or a
      // GETCHUNKS-only client's (GETCHUNKS, PUTNORESULT).
      const m = t.series.get(main)?.size ? t.series.get(main)! : t.series.get(pre);
      if (!m?.size) return undefined;
      const xs = [...m.values()];
      return { streams: xs.map((x) => x.points), totals: xs.map((x) => x.bytes) };
    };
    const download = dir('GETTIME', 'GETCHUNKS');
    const upload = dir('PUT', 'PUTNORESULT');
    const finished = new Date();
    try {
      this.o.onTest?.({
        kind: 'rmbt-server',
        started_at: t.startedAt,
        finished_at: finished,
        engine: t.kinds.has('js') ? 'js' : 'native',
        info: {
          peer: t.address,
          peer_port: t.peerPort,
          local_port: t.localPort,
          protocol: [...t.transports].sort().join(',') || 'plain',
          direction: download && upload ? 'both' : upload ? 'send' : 'receive',
          connections: t.connections,
          bytes_sent: t.sent,
          bytes_received: t.received,
          duration_ms: finished.getTime() - t.startedAt.getTime(),
          pings: t.pings,
          test_uuid: t.uuid,
          end: t.quotaEnded ? 'quota' : t.error && !download && !upload ? 'error' : 'done',
        },
        ...(download ? { download } : {}),
        ...(upload ? { upload } : {}),
        ...(t.error ? { error: t.error } : {}),
      });
    } catch (err) {
      this.o.log?.error({ err: String(err) }, 'recording an inbound RMBT test failed');
    }
  }

  private accept(socket: net.Socket, spec: ListenerSpec, nativeTls = false): void {
    // For Node's TLS the TCP socket under this one was admitted (and is tracked) already.
    if (!spec.tls || nativeTls) this.admit(socket);
    if (socket.destroyed) return;
    this.stats.accepted++;
    socket.setTimeout(this.o.idleTimeoutMs * 2, () => socket.destroy());
    let ch: Channel;
    try {
      ch = new Channel(socket, nativeTls ? this.o.engine.tls!.server(this.tlsCtx!) : undefined);
    } catch (err) {
      this.o.log?.warn({ err: toProbeError(err).message }, 'no TLS session for a connection');
      socket.destroy();
      return;
    }
    const log = this.o.log?.child({ peer: `${socket.remoteAddress}:${socket.remotePort}` });
    const fig: SessionFigures = { commands: 0, sent_bytes: 0, received_bytes: 0, pings: 0 };
    const t0 = process.hrtime.bigint();
    const ended = (extra: Record<string, unknown>) =>
      log?.info(
        {
          event: 'session_end',
          ...fig,
          duration_s: Math.round(Number(process.hrtime.bigint() - t0) / 1e6) / 1e3,
          ...extra,
        },
        'RMBT session ended',
      );
    (async () => {
      // The handshake is part of the pending stage: its deadline and cap apply (admit).
      if (nativeTls) await ch.tlsHandshake(this.o.handshakeTimeoutMs);
      let transport: string = spec.mode === 'plain' ? 'plain' : 'http';
      if (spec.mode === 'http') {
        const up = await this.upgrade(ch);
        if (!up) return;
        transport = up;
      }
      if (spec.tls) transport += '+tls';
      this.stats.sessions++;
      const conn = ++this.connSeq;
      const quota = this.o.quota;
      const address = socket.remoteAddress ?? '';
      await serveSession(
        ch,
        this.o.engine,
        {
          ...this.o,
          onToken: (uuid) => {
            const busy = this.promote(socket, uuid);
            if (!busy) this.tests.get(uuid)?.transports.add(transport);
            return busy;
          },
          ...(this.o.onTest
            ? { onJob: (cmd, out) => this.noteJob(fig.uuid, conn, cmd, out, this.o.engine.kind) }
            : {}),
          ...(quota?.active
            ? {
                account: (bytes: number) => {
                  quota.add(address, bytes);
                  return quota.remaining(address) > 0;
                },
              }
            : {}),
        },
        log,
        fig,
      );
      ended({ end: 'quit' });
    })()
      .catch((err) => {
        this.stats.failed++;
        const e = toProbeError(err);
        const t = fig.uuid ? this.tests.get(fig.uuid) : undefined;
        if (t) {
          if (e.code === 'BP_ERR_QUOTA') {
            t.quotaEnded = true;
            this.stats.quota++;
          } else if (e.code !== 'BP_ERR_RMBT_BUSY') t.error ??= e.toJSON();
        }
        // Past its token a connection is a measurement: its end is worth a line; before, debug only.
        if (fig.uuid) ended({ end: 'error', code: e.code });
        else log?.debug({ code: e.code, err: e.message }, 'session ended with an error');
      })
      .finally(() => {
        const t = fig.uuid ? this.tests.get(fig.uuid) : undefined;
        if (t) t.pings += fig.pings;
        if (!socket.destroyed) socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      });
  }

  /**
   * The HTTP side of an `http` listener. The request head is read in full (up to 8 KiB, robust to
   * split segments, like RUSTD); non-GET gets 405, a GET without a usable Upgrade gets 426.
   */
  private async upgrade(ch: Channel): Promise<'http' | 'ws' | undefined> {
    const head = await ch.readHttpHead(this.o.handshakeTimeoutMs);
    const reply = (status: string, extra = '') =>
      ch.writeRaw(
        Buffer.from(`HTTP/1.1 ${status}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`, 'latin1'),
      );
    if (!head.startsWith('GET ')) {
      reply('405 Method Not Allowed', 'Allow: GET\r\n');
      return undefined;
    }
    const upgrade = /^upgrade:\s*(\S+)\s*$/im.exec(head)?.[1]?.toLowerCase();
    if (upgrade === 'rmbt') {
      // No trailing NUL: that byte in RMBTD's reply is a bug clients work around (§2.3).
      ch.writeRaw(
        Buffer.from(
          'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: RMBT\r\n\r\n',
          'latin1',
        ),
      );
      return 'http';
    }
    if (upgrade === 'websocket') {
      const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(head)?.[1];
      const version = /^sec-websocket-version:\s*(\S+)\s*$/im.exec(head)?.[1];
      if (!key || (version !== undefined && version !== '13')) {
        reply('400 Bad Request', 'Sec-WebSocket-Version: 13\r\n');
        return undefined;
      }
      ch.writeRaw(
        Buffer.from(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${wsAccept(key)}\r\n\r\n`,
          'latin1',
        ),
      );
      ch.enableWs('server');
      return 'ws';
    }
    reply('426 Upgrade Required', 'Upgrade: RMBT, websocket\r\n');
    return undefined;
  }

  async close(): Promise<void> {
    for (const e of [...this.pending.values(), ...this.active.values()]) e.socket.destroy();
    // tests cut short by the stop are still reported
    for (const uuid of [...this.tests.keys()]) this.finishTest(uuid);
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers = [];
  }
}

function inc(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

function dec(m: Map<string, number>, k: string): void {
  const n = (m.get(k) ?? 0) - 1;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}
