import { randomBytes, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import type { Engine, EngineJob, UdpRunHandle } from '../engine/types.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { InboundReport } from '../measure/inbound.js';
import { type Point, SERVER_SAMPLE_NS, withEnd } from '../measure/speed.js';
import { Channel } from '../net/channel.js';
import type { Quota } from '../net/quota.js';
import { cpuMeter } from '../util/cpu.js';
import {
  AUTH_FAILED,
  type Command,
  decodeCommand,
  decodeJoin,
  decodeMd5Answer,
  decodeStatus,
  encodeOk,
  encodeStatus,
  HELLO,
  md5Digest,
  STATUS_SIZE,
  sessionToken,
  statusesIn,
  UDP_CLIENT_OFFSET,
  udpPayloadFor,
} from './codec.js';
import { bytesToBigInt, parseClientHello, serverConfirm, serverKey, verifier } from './ecsrp5.js';

/**
 * Our btest server (specs/btest.md): accepts RouterOS and btest clients, TCP and UDP, multi-connection,
 * auth none / MD5 / EC-SRP5. Built for a LAN: auth on by default, a session limit, per-session duration
 * and byte caps, and a handshake deadline and cap so a client that never finishes costs no more than its
 * socket for handshake_timeout and never holds a session slot.
 */
export interface BtestServerOptions {
  host: string;
  port: number;
  udpPortStart: number;
  auth: 'ecsrp5' | 'md5' | 'none';
  user: string;
  password?: string;
  maxSessions: number;
  maxDurationS: number;
  maxBytes: number;
  handshakeTimeoutMs: number;
  engine: Engine;
  log?: Logger;
  /** daily per-address and total budgets; checked after login and once a second */
  quota?: Quota;
  /** every test past its login, when it ends: stored as an inbound run by `serve` */
  onSession?: (report: InboundReport) => void;
  /** UDP ports handed out: udpPortStart … + udpPortCount − 1 (0 or absent: maxSessions of them) */
  udpPortCount?: number;
}

/** How long secondaries of a multi-connection test may take to join (RS waits 10 s, §6). */
const JOIN_WAIT_MS = 10_000;

interface Pending {
  token: number;
  ip: string;
  want: number;
  conns: Channel[];
  ready: () => void;
}

/** Connections in their handshake at once, per allowed session (at least 64 in all). */
const HANDSHAKES_PER_SESSION = 16;
const MIN_HANDSHAKES = 64;

export class BtestServer {
  private server = net.createServer();
  private sockets = new Set<net.Socket>();
  /** connections that have not finished their handshake (command, auth or join), with their deadline */
  private handshaking = new Map<net.Socket, NodeJS.Timeout>();
  private pending = new Map<number, Pending>();
  private active = 0;
  private nextUdp: number;
  /** one salt per server run for the EC-SRP5 verifier (RouterOS keeps one per user) */
  private readonly salt = randomBytes(16);
  private readonly ver;
  readonly stats = {
    sessions: 0,
    refused: 0,
    authFailed: 0,
    evicted: 0,
    handshakeTimeouts: 0,
    /** refused or ended by a daily quota */
    quota: 0,
  };

  constructor(private readonly o: BtestServerOptions) {
    if (o.auth !== 'none' && !o.password)
      throw new ProbeError('BP_ERR_CONFIG', 'btest_server.password is required unless auth is none');
    this.nextUdp = o.udpPortStart;
    this.ver = o.auth === 'ecsrp5' ? verifier(o.user, o.password!, this.salt) : undefined;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  async start(): Promise<void> {
    this.server.on('connection', (s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port, this.o.host, () => resolve());
    }).catch((err) => {
      throw toProbeError(err, 'BP_ERR_CONFIG');
    });
    this.o.log?.info({ host: this.o.host, port: this.port, auth: this.o.auth }, 'btest server listening');
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** sessions past their authentication */
  get activeSessions(): number {
    return this.active;
  }

  /** connections still in their handshake */
  get handshakingConnections(): number {
    return this.handshaking.size;
  }

  /**
   * A handshake has one deadline in all (not one per read), and handshakes have their own cap: when it is
   * full the oldest is dropped, so idle or half-open connections can neither pile up nor lock out a real
   * client, which finishes in milliseconds. Only an authenticated session takes one of max_sessions.
   */
  private accept(sock: net.Socket): void {
    this.sockets.add(sock);
    if (this.handshaking.size >= Math.max(MIN_HANDSHAKES, this.o.maxSessions * HANDSHAKES_PER_SESSION)) {
      const [oldest, timer] = this.handshaking.entries().next().value as [net.Socket, NodeJS.Timeout];
      clearTimeout(timer);
      this.handshaking.delete(oldest);
      this.stats.evicted++;
      oldest.destroy();
    }
    const timer = setTimeout(() => {
      if (!this.handshaking.has(sock)) return;
      this.stats.handshakeTimeouts++;
      sock.destroy();
    }, this.o.handshakeTimeoutMs);
    timer.unref();
    this.handshaking.set(sock, timer);
    sock.once('close', () => {
      this.sockets.delete(sock);
      this.settle(sock);
    });
    const ch = new Channel(sock);
    const log = this.o.log?.child({ peer: `${sock.remoteAddress}:${sock.remotePort}` });
    this.serve(ch, log)
      .catch((err) =>
        log?.debug({ code: toProbeError(err).code, err: String(err) }, 'btest connection ended'),
      )
      .finally(() => {
        if (!sock.destroyed) sock.end();
      });
  }

  /** The connection finished its handshake: its deadline and handshake slot are released. */
  private settle(sock: net.Socket): void {
    const timer = this.handshaking.get(sock);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.handshaking.delete(sock);
  }

  /**
   * One control connection. A session logs at info what btest-rs prints as AUTH_SUCCESS/AUTH_FAILURE,
   * TEST_START and TEST_END: the peer (on the child logger), the user, never the password, and the
   * figures at the end.
   */
  private async serve(ch: Channel, log?: Logger): Promise<void> {
    const t = this.o.handshakeTimeoutMs;
    ch.writeRaw(HELLO);
    const first = await ch.readBytes(16, t);
    const token = decodeJoin(first);
    if (token !== undefined) return this.join(ch, token);
    const cmd = decodeCommand(first);
    const refuse = () => {
      this.stats.refused++;
      ch.writeRaw(AUTH_FAILED);
      return new ProbeError('BP_ERR_SERVER_LIMIT', 'too many sessions');
    };
    // Full already: refused at once, before any auth work.
    if (this.active >= this.o.maxSessions) throw refuse();
    const login = await this.authenticate(ch);
    const who = { method: this.o.auth, ...(login.user !== undefined ? { user: login.user } : {}) };
    if (!login.ok) {
      this.stats.authFailed++;
      log?.info({ event: 'auth', result: 'failure', ...who }, 'btest login refused');
      throw new ProbeError('BP_ERR_BTEST_AUTH', 'wrong credentials');
    }
    log?.info({ event: 'auth', result: 'success', ...who }, 'btest login accepted');
    // The slot is taken only now, so a client stuck in its handshake never holds one (the success
    // reply, the command's OK, has not gone out yet: a refusal here still reads as a refusal).
    if (this.active >= this.o.maxSessions) throw refuse();
    const peer = ch.socket.remoteAddress ?? '';
    const over = this.o.quota?.check(peer);
    if (over) {
      // No reason travels in btest's refusal: the log and the metrics say which limit it was.
      this.stats.refused++;
      this.stats.quota++;
      log?.info({ event: 'quota', reason: over.reason, ...who }, `btest test refused: ${over.message}`);
      ch.writeRaw(AUTH_FAILED);
      throw new ProbeError('BP_ERR_QUOTA', over.message);
    }
    this.o.quota?.begin(peer);
    this.settle(ch.socket);
    this.active++;
    const test = {
      protocol: cmd.proto,
      server_sends: cmd.serverSends,
      server_receives: cmd.serverReceives,
      connections: Math.max(1, cmd.connCount),
      ...(cmd.remoteTxSpeed ? { remote_tx_speed: cmd.remoteTxSpeed } : {}),
      ...(cmd.localTxSpeed ? { local_tx_speed: cmd.localTxSpeed } : {}),
    };
    log?.info({ event: 'test_start', ...test }, 'btest test started');
    const t0 = process.hrtime.bigint();
    const startedAt = new Date();
    // the addresses now: a closed socket no longer has them
    const moved: Moved = {
      tx: 0,
      rx: 0,
      kind: this.o.engine.kind,
      end: 'done',
      peer: ch.socket.remoteAddress ?? '',
      peerPort: ch.socket.remotePort ?? 0,
      localPort: ch.socket.localPort ?? this.o.port,
    };
    let failure: ProbeError | undefined;
    try {
      this.stats.sessions++;
      await (cmd.proto === 'udp' ? this.udp(ch, cmd, moved) : this.tcp(ch, cmd, moved));
    } catch (err) {
      failure = toProbeError(err);
      throw err;
    } finally {
      this.active--;
      const durationNs = Number(process.hrtime.bigint() - t0);
      this.report(cmd, who.user, startedAt, durationNs, moved, failure);
      const s = durationNs / 1e9;
      const mbps = (b: number) => (s > 0 ? Math.round((b * 8) / s / 1e4) / 100 : 0);
      log?.info(
        {
          event: 'test_end',
          ...test,
          duration_s: Math.round(s * 1000) / 1000,
          tx_bytes: moved.tx,
          rx_bytes: moved.rx,
          tx_mbps: mbps(moved.tx),
          rx_mbps: mbps(moved.rx),
          ...(moved.lost !== undefined ? { lost_packets: moved.lost } : {}),
          ...(moved.end !== 'done' ? { ended_by: moved.end } : {}),
        },
        'btest test ended',
      );
    }
  }

  /** Hands the finished test to `onSession` as the peer saw it. */
  private report(
    cmd: Command,
    user: string | undefined,
    startedAt: Date,
    durationNs: number,
    moved: Moved,
    failure: ProbeError | undefined,
  ): void {
    if (!this.o.onSession) return;
    const dir = (d: { streams: Point[][]; totals: number[] } | undefined) =>
      d?.totals.some((b) => b > 0) ? d : undefined;
    try {
      this.o.onSession({
        kind: 'btest-server',
        started_at: startedAt,
        finished_at: new Date(startedAt.getTime() + durationNs / 1e6),
        engine: moved.kind,
        ...(moved.localCpu !== undefined ? { local_cpu_percent: moved.localCpu } : {}),
        info: {
          peer: moved.peer,
          peer_port: moved.peerPort,
          local_port: moved.localPort,
          ...(user !== undefined ? { user } : {}),
          protocol: cmd.proto,
          // the client's view: the server sending is the client receiving
          direction: cmd.serverSends && cmd.serverReceives ? 'both' : cmd.serverSends ? 'receive' : 'send',
          connections: moved.connections ?? Math.max(1, cmd.connCount),
          bytes_sent: moved.tx,
          bytes_received: moved.rx,
          duration_ms: Math.round(durationNs / 1e3) / 1e3,
          ...(moved.lost !== undefined ? { lost_packets: moved.lost } : {}),
          ...(moved.remoteCpu !== undefined ? { remote_cpu_percent: moved.remoteCpu } : {}),
          end: failure && moved.end === 'done' ? 'error' : moved.end,
        },
        ...(dir(moved.sent) ? { download: moved.sent! } : {}),
        ...(dir(moved.received) ? { upload: moved.received! } : {}),
        ...(moved.udpRx ? { udp: moved.udpRx } : {}),
        ...(failure ? { error: failure.toJSON() } : {}),
      });
    } catch (err) {
      this.o.log?.error({ err: String(err) }, 'recording an inbound btest test failed');
    }
  }

  /** Ends the test when the per-test cap or the address's daily budget is reached (checked each second). */
  private overBudget(peer: string, total: number, counted: number, moved: Moved): boolean {
    if (this.o.maxBytes && total >= this.o.maxBytes) {
      moved.end = 'limit';
      return true;
    }
    const q = this.o.quota;
    if (!q) return false;
    q.add(peer, total - counted);
    if (q.remaining(peer) <= 0) {
      moved.end = 'quota';
      this.stats.quota++;
      return true;
    }
    return false;
  }

  /** §4 and §5; ok when the client proved the password (or none is asked for), and the user it gave. */
  private async authenticate(ch: Channel): Promise<{ ok: boolean; user?: string }> {
    const t = this.o.handshakeTimeoutMs;
    if (this.o.auth === 'none') return { ok: true };
    if (this.o.auth === 'md5') {
      const challenge = randomBytes(16);
      ch.writeRaw(Buffer.concat([Buffer.from([2, 0, 0, 0]), challenge]));
      const answer = decodeMd5Answer(await ch.readBytes(48, t));
      const want = md5Digest(this.o.password!, challenge);
      const ok = answer.user === this.o.user && timingSafeEqual(answer.digest, want);
      if (!ok) ch.writeRaw(AUTH_FAILED);
      return { ok, user: answer.user };
    }
    ch.writeRaw(Buffer.from([3, 0, 0, 0]));
    const len = (await ch.readBytes(1, t))[0]!;
    const hello = parseClientHello(await ch.readBytes(len, t));
    // An unknown user gets a key for a verifier nobody knows, so the reply does not reveal who exists.
    const v =
      hello.user === this.o.user
        ? this.ver!
        : verifier(hello.user, randomBytes(16).toString('hex'), this.salt);
    const key = serverKey(hello, v, this.salt, bytesToBigInt(randomBytes(32)));
    ch.writeRaw(Buffer.concat([Buffer.from([key.payload.length]), key.payload]));
    const len3 = (await ch.readBytes(1, t))[0]!;
    const sc = serverConfirm(key.state, await ch.readBytes(len3, t));
    // RS closes on a bad proof; what RouterOS sends is undocumented (§5.1), so we close too.
    if (!sc) return { ok: false, user: hello.user };
    ch.writeRaw(Buffer.concat([Buffer.from([32]), sc]));
    return { ok: true, user: hello.user };
  }

  /** A secondary connection: handed to its session, which owns it (and closes it) from here on. */
  private async join(ch: Channel, token: number): Promise<void> {
    const p = this.pending.get(token);
    if (!p || p.ip !== ch.socket.remoteAddress || p.conns.length >= p.want) {
      ch.writeRaw(AUTH_FAILED);
      throw new ProbeError('BP_ERR_BTEST_REFUSED', 'join with an unknown token');
    }
    ch.writeRaw(encodeOk(token));
    this.settle(ch.socket);
    p.conns.push(ch);
    if (p.conns.length === p.want) p.ready();
    await new Promise<void>((r) => ch.socket.once('close', () => r()));
  }

  /** What a session moved, for its TEST_END line. */
  private async tcp(main: Channel, cmd: Command, moved: Moved): Promise<void> {
    let conns = [main];
    if (cmd.connCount > 1) {
      // A random token a join can never be mistaken for a command with (§6, see sessionToken).
      let token: number;
      do token = sessionToken(randomBytes(2));
      while (this.pending.has(token));
      const p: Pending = {
        token,
        ip: main.socket.remoteAddress ?? '',
        want: cmd.connCount,
        conns: [main],
        ready: () => {},
      };
      const joined = new Promise<void>((r) => {
        p.ready = r;
      });
      this.pending.set(token, p);
      main.writeRaw(encodeOk(token));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([joined, new Promise((r) => (timer = setTimeout(r, JOIN_WAIT_MS)))]);
      clearTimeout(timer);
      this.pending.delete(token);
      conns = p.conns;
    } else {
      main.writeRaw(encodeOk());
    }
    const t0 = process.hrtime.bigint();
    const maxMs = this.o.maxDurationS * 1000;
    const job: EngineJob = cmd.serverSends
      ? {
          mode: 'send',
          framing: { kind: 'raw' },
          chunks: conns.map((c) => c.chunkSet(0x8000, false)),
          until: { durationNs: maxMs * 1e6 },
          sampleNs: SERVER_SAMPLE_NS,
          idleTimeoutMs: this.o.handshakeTimeoutMs * 3,
          ...(cmd.remoteTxSpeed ? { rateBps: cmd.remoteTxSpeed / conns.length } : {}),
          // TCP both: the client's data arrives on the same connections; count it, keep nothing.
          ...(cmd.serverReceives ? { countInbound: true } : {}),
        }
      : {
          mode: 'receive',
          framing: { kind: 'raw' },
          sampleNs: SERVER_SAMPLE_NS,
          idleTimeoutMs: this.o.handshakeTimeoutMs * 3,
          maxDurationMs: maxMs,
        };
    const run = this.o.engine.run(
      conns,
      job,
      conns.map(() => t0),
    );
    const cpu = cpuMeter();
    const peer = main.socket.remoteAddress ?? '';
    let seq = 0;
    let last = 0;
    let counted = 0;
    moved.connections = conns.length;
    moved.kind = run.kind;
    // The test ends when the client closes (§10); byte cap and daily budget checked once a second.
    const tick = setInterval(() => {
      // counters hold what was sent (send jobs) or received; TCP both counts the inbound apart
      const total = run.counters.reduce((a, b) => a + b, 0);
      // Status only when we only receive: in TCP both it would land inside our own bulk stream.
      if (cmd.serverReceives && !cmd.serverSends)
        main.writeRaw(encodeStatus({ cpu: cpu.percent(), seq: ++seq, bytes: total - last }));
      last = total;
      if (this.overBudget(peer, total, counted, moved)) run.abort();
      counted = total;
    }, 1000);
    for (const c of conns) c.socket.once('close', () => run.abort());
    try {
      const out = await run.done;
      const sum = (f: (o: (typeof out)[number]) => number) => out.reduce((a, o) => a + f(o), 0);
      if (cmd.serverSends && !cmd.serverReceives) {
        // The client's once-a-second statuses came back while we sent (§8): its CPU is the last one's.
        const st = statusesIn(main.takeBuffered()).filter((x) => x.seq > 0);
        if (st.length) moved.remoteCpu = st.at(-1)!.cpu;
      }
      if (cmd.serverSends) {
        moved.tx = sum((o) => o.bytes);
        moved.rx = sum((o) => o.rx?.bytes ?? 0);
        moved.sent = {
          streams: out.map((o) => withEnd(o.points, o.bytes, o.endNs)),
          totals: out.map((o) => o.bytes),
        };
        if (cmd.serverReceives)
          moved.received = {
            streams: out.map((o) => withEnd(o.rx?.points ?? [], o.rx?.bytes ?? 0, o.endNs)),
            totals: out.map((o) => o.rx?.bytes ?? 0),
          };
      } else {
        moved.rx = sum((o) => o.bytes);
        moved.received = {
          streams: out.map((o) => withEnd(o.points, o.bytes, o.endNs)),
          totals: out.map((o) => o.bytes),
        };
      }
      this.o.quota?.add(peer, moved.tx + moved.rx - counted);
      moved.localCpu = cpu.percent();
    } finally {
      clearInterval(tick);
      for (const c of conns) c.close();
    }
  }

  private async openUdp(cmd: Command, main: Channel): Promise<{ run: UdpRunHandle; base: number }> {
    const family = net.isIPv6(main.socket.remoteAddress ?? '') ? 6 : 4;
    const peer = main.socket.remoteAddress!;
    // Within the configured range only: in a container, only the mapped ports reach us.
    const start = this.o.udpPortStart;
    const end = Math.min(65000, start + (this.o.udpPortCount || this.o.maxSessions) - 1);
    for (let i = 0; i < Math.min(200, end - start + 1); i++) {
      const base = this.nextUdp;
      this.nextUdp = base + 1 > end ? start : base + 1;
      try {
        const run = await this.o.engine.udp({
          bindHost: family === 6 ? '::' : '0.0.0.0',
          bindPort: base,
          peerHost: peer,
          peerPort: (base + UDP_CLIENT_OFFSET) & 0xffff,
          // RouterOS may send from base+256+i and through NAT: accept any source port of the client (§7).
          connect: false,
          family,
          ...(cmd.serverSends
            ? {
                send: {
                  payload: udpPayloadFor(cmd.txSize || 1500, family),
                  paceBytes: cmd.txSize || 1500,
                  // Unlimited: unpaced until the client's first status, then 1.5 × what it received (§9).
                  rateBps: cmd.remoteTxSpeed || 0,
                  seqStart: 0,
                },
              }
            : {}),
          receive: cmd.serverReceives,
          durationNs: this.o.maxDurationS * 1e9,
          sampleNs: SERVER_SAMPLE_NS,
        });
        return { run, base };
      } catch {
        // port taken: try the next one
      }
    }
    throw new ProbeError('BP_ERR_SERVER_LIMIT', 'no free UDP port');
  }

  private async udp(main: Channel, cmd: Command, moved: Moved): Promise<void> {
    const { run, base } = await this.openUdp(cmd, main);
    moved.kind = run.kind;
    const peer = main.socket.remoteAddress ?? '';
    let counted = 0;
    main.writeRaw(encodeOk());
    const port = Buffer.alloc(2);
    port.writeUInt16BE(base, 0);
    main.writeRaw(port);
    const cpu = cpuMeter();
    let seq = 0;
    let lastRx = 0;
    const overhead = net.isIPv6(main.socket.remoteAddress ?? '') ? 48 : 28;
    const tick = setInterval(() => {
      // received bytes in IP packet terms (payload + headers), as btest counts (§7)
      const rx = run.counters[1]! + run.counters[2]! * overhead;
      main.writeRaw(encodeStatus({ cpu: cpu.percent(), seq: ++seq, bytes: rx - lastRx }));
      lastRx = rx;
      const total = run.counters[0]! + rx;
      if (this.overBudget(peer, total, counted, moved)) run.abort();
      counted = total;
    }, 1000);
    // Client statuses: unlimited sending adapts to 1.5 × what the client received (§9).
    const reader = (async () => {
      for (;;) {
        const b = await main.readBytes(STATUS_SIZE, this.o.maxDurationS * 1000).catch(() => undefined);
        if (!b) break;
        let st: ReturnType<typeof decodeStatus>;
        try {
          st = decodeStatus(b);
        } catch {
          break; // not a status: the client is not speaking btest any more
        }
        if (st.seq > 0) moved.remoteCpu = st.cpu;
        if (cmd.serverSends && !cmd.remoteTxSpeed && st.bytes > 0) run.setRate(st.bytes * 8 * 1.5);
      }
      run.abort();
    })();
    try {
      const out = await run.start();
      moved.tx = out.sentBytes;
      moved.rx = out.bytes;
      moved.connections = 1;
      if (cmd.serverSends) moved.sent = { streams: [out.txPoints], totals: [out.sentBytes] };
      if (cmd.serverReceives) {
        moved.received = { streams: [out.rxPoints], totals: [out.bytes] };
        // loss is known only where the datagrams arrive
        moved.lost = out.lost;
        moved.udpRx = { packets: out.packets, lost: out.lost };
      }
      this.o.quota?.add(peer, moved.tx + moved.rx - counted);
      moved.localCpu = cpu.percent();
    } finally {
      clearInterval(tick);
      main.close();
      await reader;
    }
  }
}

/** What a session moved, filled in as it goes (the report is made even when it fails midway). */
interface Moved {
  peer: string;
  peerPort: number;
  localPort: number;
  tx: number;
  rx: number;
  lost?: number;
  kind: 'native' | 'js';
  end: 'done' | 'quota' | 'limit';
  connections?: number;
  sent?: { streams: Point[][]; totals: number[] };
  received?: { streams: Point[][]; totals: number[] };
  udpRx?: { packets: number; lost: number };
  remoteCpu?: number;
  localCpu?: number;
}
