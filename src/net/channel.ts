import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { type NativeTlsSession, nativeTlsError } from '../engine/tls.js';
import type { ChunkSet, DataStream, NativeHandle, StreamSink, WsHandBack } from '../engine/types.js';
import { ProbeError } from '../errors.js';
import { randomPool } from '../util/randomPool.js';
import {
  encodeFrame,
  frameHeader,
  MAX_FRAME,
  OP_BINARY,
  OP_CLOSE,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  WsDecoder,
  type WsDecoderOptions,
} from './ws.js';

/** The parts of Node's internal TCP handle the native hand-over uses (stable across Node 18–22). */
interface TcpHandle {
  fd: number;
  reading: boolean;
  readStop(): number;
  readStart(): number;
}

/** RMBTD's MAX_LINE_LENGTH (specs/rmbt.md §3): a longer line is a protocol error, never unbounded memory. */
export const MAX_LINE = 1024;
/** Bytes we buffer while nobody reads (protocol mode); a peer that floods us is cut off. */
const MAX_PENDING = 16 * 1024 * 1024;
/** Pongs are skipped while this much is queued for a peer that does not read (RFC 6455 §5.5.3 lets a
 * pong answer only the latest ping): pings cannot queue replies without bound. */
const MAX_QUEUED_FOR_PONG = 64 * 1024;
/** Chunk sets without a mask are the same for every connection: a few are kept and shared. */
const SHARED_SETS = 3;
const shared = new Map<string, ChunkSet>();

/** The negotiated TLS protocol and cipher (IANA name) of a TLS connection. */
export interface TlsInfo {
  version: string;
  cipher: string;
}

/**
 * One RMBT connection on either side: a socket (plain, Node's TLS, or TCP carrying a native TLS session),
 * optionally WebSocket-framed, with a line reader for the protocol and a data path an engine can take
 * over (DataStream). The layers, outside in: socket → native TLS (`tlsSession`) → WebSocket → payload.
 */
export class Channel implements DataStream {
  wsRole: 'client' | 'server' | null = null;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private sink: StreamSink | null = null;
  private wake: (() => void) | null = null;
  private failure: ProbeError | null = null;
  private decoder: WsDecoder | null = null;
  private maskKey: Buffer | null = null;
  private closedByUs = false;
  private tlsReady = false;

  /**
   * `tlsSession`: a native TLS session over this TCP socket (client or server side); its handshake starts
   * with `tlsHandshake()` on a client and with the client's first bytes on a server.
   */
  constructor(
    readonly socket: Socket,
    private readonly tlsSession?: NativeTlsSession,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => (this.tlsSession ? this.onCipher(d) : this.onRaw(d)));
    socket.on('error', (err) => this.fail(new ProbeError('BP_ERR_PEER_CLOSED', err.message)));
    socket.on('close', () => {
      this.fail(
        this.closedByUs
          ? new ProbeError('BP_ERR_ABORTED', 'connection closed locally')
          : new ProbeError('BP_ERR_PEER_CLOSED', 'the peer closed the connection'),
      );
      // The session's memory goes now, not at garbage collection (a lent one: when the run gives it back).
      this.tlsSession?.free();
    });
  }

  get closed(): boolean {
    return this.failure !== null;
  }

  /** The negotiated TLS version and cipher, from whichever stack carries it; undefined without TLS. */
  tlsInfo(): TlsInfo | undefined {
    if (this.tlsSession) {
      const i = this.tlsSession.info();
      return i.version && i.cipher ? { version: i.version, cipher: i.cipher } : undefined;
    }
    const s = this.socket as Socket & {
      encrypted?: boolean;
      getProtocol?: () => string | null;
      getCipher?: () => { standardName?: string; name: string };
    };
    if (!s.encrypted || !s.getProtocol || !s.getCipher) return undefined;
    const version = s.getProtocol();
    const c = s.getCipher();
    return version ? { version, cipher: c.standardName ?? c.name } : undefined;
  }

  /** Ciphertext from the socket: into the session, then whatever it decrypts goes up the stack. */
  private onCipher(d: Buffer): void {
    try {
      this.tlsSession!.feed(d);
      this.pumpTls();
    } catch (err) {
      this.fail(nativeTlsError(err));
      this.socket.destroy();
    }
  }

  /** Drives the session: the handshake until done, then decryption of what was fed; sends its output. */
  private pumpTls(): void {
    const t = this.tlsSession!;
    if (!this.tlsReady) {
      const done = t.handshake();
      this.flushTls();
      if (!done) return;
      this.tlsReady = true;
      this.notify();
    }
    const plain = t.read();
    this.flushTls();
    if (plain === null) {
      this.fail(new ProbeError('BP_ERR_PEER_CLOSED', 'the peer closed the TLS session'));
      this.socket.end();
      return;
    }
    if (plain.length) this.onRaw(plain);
  }

  private flushTls(): void {
    const out = this.tlsSession!.takeOut();
    if (out && !this.socket.destroyed) this.socket.write(out);
  }

  /** Bytes out through the stack below the WebSocket layer (encrypted when native TLS carries it). */
  private send(buf: Buffer): boolean {
    if (!this.tlsSession) return this.socket.write(buf);
    try {
      this.tlsSession.write(buf);
    } catch (err) {
      this.fail(nativeTlsError(err));
      this.socket.destroy();
      return true;
    }
    const out = this.tlsSession.takeOut();
    return out ? this.socket.write(out) : true;
  }

  /**
   * Client side of native TLS: sends the ClientHello and waits for the handshake (a server session
   * answers on its own; this then only waits). Failures are coded (`BP_ERR_TLS` with OpenSSL's reason).
   */
  async tlsHandshake(timeoutMs: number): Promise<void> {
    if (!this.tlsSession) return;
    try {
      if (!this.tlsReady) this.pumpTls();
    } catch (err) {
      const e = nativeTlsError(err);
      this.fail(e);
      this.socket.destroy();
      throw e;
    }
    await this.waitFor(() => (this.tlsReady ? true : undefined), timeoutMs, 'TLS handshake');
  }

  private onRaw(d: Buffer): void {
    if (!this.decoder) {
      this.onPayload(d);
      return;
    }
    try {
      this.decoder.push(d);
    } catch (err) {
      this.fail(err as ProbeError);
      this.socket.destroy();
    }
  }

  private onPayload(d: Buffer): void {
    if (this.sink) {
      this.sink.data(d);
      return;
    }
    this.pending.push(d);
    this.pendingLen += d.length;
    if (this.pendingLen > MAX_PENDING) {
      this.fail(new ProbeError('BP_ERR_PROTOCOL', 'the peer sent data nobody asked for'));
      this.socket.destroy();
      return;
    }
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private fail(err: ProbeError): void {
    this.lentAbort?.();
    this.lentAbort = null;
    if (this.failure) return;
    this.failure = err;
    this.sink?.end(err);
    this.notify();
  }

  /** `text`: text messages go to a handler of their own (ndt7); a native loop drives it only if allowed. */
  private wsOpts: WsDecoderOptions = {};

  /**
   * Switch to WebSocket framing; bytes already buffered after the handshake are decoded first. `opts`:
   * the largest frame, and a handler for whole text messages (they then never reach the payload).
   */
  enableWs(role: 'client' | 'server', opts: WsDecoderOptions = {}): void {
    this.wsRole = role;
    this.wsOpts = opts;
    if (role === 'client') this.maskKey = randomBytes(4);
    this.decoder = new WsDecoder(
      role === 'server',
      (p) => this.onPayload(p),
      (op, payload) => {
        if (op === OP_PING) this.pong(payload);
        else if (op === OP_CLOSE) {
          // ndt7 peers get the close answered (RFC 6455 §5.5.1); RMBT's servers just see the end
          if (this.wsOpts.text) this.writeClose(1000);
          this.fail(new ProbeError('BP_ERR_PEER_CLOSED', 'WebSocket close frame'));
          this.socket.end();
        }
      },
      opts,
    );
    const buffered = this.pending;
    this.pending = [];
    this.pendingLen = 0;
    for (const b of buffered) this.onRaw(b);
  }

  private take(n: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.pendingLen = rest.length;
    return out;
  }

  private indexOf(needle: string): number {
    if (this.pending.length > 1) this.pending = [Buffer.concat(this.pending)];
    return this.pending.length ? this.pending[0]!.indexOf(needle) : -1;
  }

  private async waitFor<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    try {
      for (;;) {
        const got = probe();
        if (got !== undefined) return got;
        if (this.failure) throw this.failure;
        if (timedOut) throw new ProbeError('BP_ERR_TIMEOUT', `no ${what} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          timer ??= setTimeout(() => {
            timedOut = true;
            this.notify();
          }, timeoutMs);
        });
      }
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  /**
   * Reads one `\n`-terminated line (specs/rmbt.md §3: lines end in a bare \n). Leading NUL bytes are
   * dropped (RMBTD sends one after its 101 reply, §2.3) and a trailing \r is tolerated.
   */
  readLine(timeoutMs: number): Promise<string> {
    return this.waitFor(
      () => {
        const i = this.indexOf('\n');
        if (i < 0) {
          if (this.pendingLen > MAX_LINE)
            throw new ProbeError('BP_ERR_PROTOCOL', `line longer than ${MAX_LINE} bytes`);
          return undefined;
        }
        if (i > MAX_LINE) throw new ProbeError('BP_ERR_PROTOCOL', `line longer than ${MAX_LINE} bytes`);
        const line = this.take(i + 1).toString('latin1', 0, i);
        return line.replace(/^\0+/, '').replace(/\r$/, '');
      },
      timeoutMs,
      'answer',
    );
  }

  /** Reads an HTTP head up to the blank line (bounded); what follows stays buffered. */
  readHttpHead(timeoutMs: number, maxLen = 8192): Promise<string> {
    return this.waitFor(
      () => {
        const i = this.indexOf('\r\n\r\n');
        if (i < 0) {
          if (this.pendingLen > maxLen) throw new ProbeError('BP_ERR_PROTOCOL', 'HTTP head too long');
          return undefined;
        }
        return this.take(i + 4).toString('latin1', 0, i);
      },
      timeoutMs,
      'HTTP reply',
    );
  }

  /** Reads exactly n payload bytes (used by tests and small exchanges, not bulk data). */
  readBytes(n: number, timeoutMs: number): Promise<Buffer> {
    return this.waitFor(
      () => (this.pendingLen >= n ? Buffer.from(this.take(n)) : undefined),
      timeoutMs,
      'data',
    );
  }

  /**
   * The first n payload bytes without taking them (they stay for the line reader or the engine). Used
   * to tell an `ERR` answer from chunk data before a bulk phase starts (F17).
   */
  peekBytes(n: number, timeoutMs: number): Promise<Buffer> {
    return this.waitFor(
      () => {
        if (this.pendingLen < n) return undefined;
        if (this.pending.length > 1) this.pending = [Buffer.concat(this.pending)];
        return Buffer.from(this.pending[0]!.subarray(0, n));
      },
      timeoutMs,
      'data',
    );
  }

  /** Waits until the connection is closed or fails (a peer's close after ours); false on a timeout. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    try {
      return await this.waitFor(() => (this.failure ? true : undefined), timeoutMs, 'close');
    } catch (err) {
      if ((err as ProbeError).code === 'BP_ERR_TIMEOUT') return false;
      return true;
    }
  }

  /** Whether anything arrives within timeoutMs (false on silence; errors still throw). */
  async hasData(timeoutMs: number): Promise<boolean> {
    try {
      return await this.waitFor(() => (this.pendingLen > 0 ? true : undefined), timeoutMs, 'data');
    } catch (err) {
      if ((err as ProbeError).code === 'BP_ERR_TIMEOUT') return false;
      throw err;
    }
  }

  writeLine(line: string): void {
    const payload = Buffer.from(`${line}\n`, 'latin1');
    this.send(this.wsRole ? encodeFrame(OP_TEXT, payload, this.wsRole === 'client') : payload);
  }

  writeRaw(buf: Buffer): void {
    this.send(buf);
  }

  /** One WebSocket text message (a JSON measurement); false means wait for drain. */
  writeText(text: string): boolean {
    return this.send(encodeFrame(OP_TEXT, Buffer.from(text, 'utf8'), this.wsRole === 'client'));
  }

  /** A WebSocket ping (ndt7 servers send one after each measurement; the peer answers in kind). */
  writePing(payload: Buffer): void {
    if (this.wsRole && !this.socket.destroyed && payload.length <= 125)
      this.send(encodeFrame(OP_PING, payload, this.wsRole === 'client'));
  }

  /**
   * Answers a ping (RFC 6455 §5.5.3). Behind a full send queue (an upload) only the newest ping is
   * answered, at the next drain: a peer's pings never grow our queue, and none goes unanswered.
   */
  private pong(payload: Buffer): void {
    const role = this.wsRole;
    if (!role || this.socket.destroyed) return;
    if (this.socket.writableLength <= MAX_QUEUED_FOR_PONG) {
      this.send(encodeFrame(OP_PONG, payload, role === 'client'));
      return;
    }
    const waiting = this.pongDue !== undefined;
    this.pongDue = Buffer.from(payload);
    if (waiting) return;
    this.socket.once('drain', () => {
      const p = this.pongDue;
      this.pongDue = undefined;
      if (p && !this.closeSent && !this.socket.destroyed)
        this.send(encodeFrame(OP_PONG, p, role === 'client'));
    });
  }

  private pongDue: Buffer | undefined;

  /** A WebSocket close frame with its status code (RFC 6455 §5.5.1), once. */
  writeClose(code = 1000): void {
    if (this.closeSent || !this.wsRole || this.socket.destroyed) return;
    this.closeSent = true;
    const body = Buffer.alloc(2);
    body.writeUInt16BE(code, 0);
    this.send(encodeFrame(OP_CLOSE, body, this.wsRole === 'client'));
  }

  private closeSent = false;

  // --- DataStream -------------------------------------------------------------------------------

  attach(sink: StreamSink): void {
    this.sink = sink;
    if (this.pendingLen) {
      const buffered = this.take(this.pendingLen);
      sink.data(buffered);
    }
    if (this.failure) sink.end(this.failure);
  }

  /** Everything buffered right now, as a copy of its own (the peer's status words read after a phase). */
  takeBuffered(): Buffer {
    return this.pendingLen ? Buffer.from(this.take(this.pendingLen)) : Buffer.alloc(0);
  }

  detach(leftover?: Buffer): void {
    this.sink = null;
    if (leftover?.length) {
      this.pending.unshift(leftover);
      this.pendingLen += leftover.length;
      this.notify();
    }
  }

  write(buf: Buffer): boolean {
    return this.send(buf);
  }

  onceDrain(cb: () => void): void {
    this.socket.once('drain', cb);
  }

  /**
   * Framed chunks for this transport. Payload is random (RMBT asks for incompressible data, §3.3).
   * WebSocket client frames must be masked (§2.4); instead of XOR-ing every chunk, the random payload is
   * sent as it is with one mask key for the connection — the server unmasks it to other random bytes —
   * and only the terminator byte is pre-masked so that it unmasks to 0x00 or 0xFF.
   */
  chunkSet(size: number, terminated: boolean, maxVariants = 8): ChunkSet {
    // Unmasked sets (plain RMBT, server-side WebSocket) are shared by all connections: 64 connections
    // asking for 4 MiB chunks then cost one set, not 64. Buffers are never written after
    // they are made, so sharing them between streams and threads is safe.
    const key = this.maskKey ? undefined : `${size}|${this.wsRole ?? ''}|${terminated}|${maxVariants}`;
    const hit = key ? shared.get(key) : undefined;
    if (key && hit) {
      shared.delete(key);
      shared.set(key, hit);
      return hit;
    }
    const set = this.makeChunkSet(size, terminated, maxVariants);
    if (key) {
      shared.set(key, set);
      if (shared.size > SHARED_SETS) shared.delete(shared.keys().next().value!);
    }
    return set;
  }

  private makeChunkSet(size: number, terminated: boolean, maxVariants: number): ChunkSet {
    // Up to 8 different chunks (at most 8 MiB in all), cycled: the payload need not repeat every chunk.
    const variants = Math.max(1, Math.min(maxVariants, Math.floor((8 * 1024 * 1024) / size)));
    const pool = randomPool(size * variants);
    const lastMask = this.maskKey ? this.maskKey[(size - 1) & 3]! : 0;
    const header = this.wsRole ? frameHeader(OP_BINARY, size, this.maskKey ?? undefined) : undefined;
    const make = (i: number, term: number | undefined): Buffer => {
      const body = pool.subarray(i * size, (i + 1) * size);
      const out = Buffer.allocUnsafe((header?.length ?? 0) + size);
      let o = 0;
      if (header) o += header.copy(out, 0);
      body.copy(out, o);
      if (term !== undefined) out[out.length - 1] = term ^ lastMask;
      return out;
    };
    const cont = Array.from({ length: variants }, (_, i) => make(i, terminated ? 0x00 : undefined));
    return { size, cont, fin: terminated ? make(0, 0xff) : cont[0]! };
  }

  // --- native hand-over -------------------------------------------------------------------------

  private savedTimeout = 0;
  private lentAbort: (() => void) | null = null;

  onCloseWhileLent(cb: () => void): void {
    this.lentAbort = cb;
  }

  async takeFd(): Promise<NativeHandle | undefined> {
    // Node's TLS lives in Node: its fd carries ciphertext, so those streams stay on the js engine. A
    // native TLS session goes with the fd: the loop decrypts on its own thread.
    if ((this.socket as { encrypted?: boolean }).encrypted) return undefined;
    if (this.tlsSession && !this.tlsReady) return undefined;
    // text mode: the loop keeps the text messages for the handler and answers pings and the close, but
    // only where nobody writes beside it (the ndt7 client; not our server, which sends measurements).
    // It resumes inside binary data (the server starts sending with its 101: a frame is often half here).
    const text = this.wsOpts.text;
    if (text && !text.native) return undefined;
    if (this.decoder && !text && !this.decoder.atFrameStart) return undefined;
    const handle = (this.socket as unknown as { _handle?: TcpHandle })._handle;
    if (!handle || typeof handle.fd !== 'number' || handle.fd < 0 || this.failure) return undefined;
    // Every byte Node still queues must reach the kernel before the loop writes (RMBT forbids pipelining
    // and the order of OK and data matters, §3).
    if (this.socket.writableLength > 0)
      await new Promise<void>((r) => this.socket.write(Buffer.alloc(0), () => r()));
    if (this.failure) return undefined;
    handle.reading = false;
    handle.readStop();
    // (after readStop: nothing more reaches the decoder now)
    const resume = text ? this.decoder?.handOver() : undefined;
    if (text && !resume) {
      handle.reading = true;
      handle.readStart();
      return undefined;
    }
    // While the loop owns the socket Node sees no activity: its idle timer must not fire.
    this.savedTimeout = this.socket.timeout ?? 0;
    if (this.savedTimeout) this.socket.setTimeout(0);
    const pending = this.pendingLen ? Buffer.from(this.take(this.pendingLen)) : Buffer.alloc(0);
    return {
      fd: handle.fd,
      pending,
      ws: this.wsRole,
      ...(text && resume
        ? { text: { max: text.max, maxFrame: this.wsOpts.maxFrame ?? MAX_FRAME, resume } }
        : {}),
      ...(this.tlsSession ? { tls: this.tlsSession } : {}),
    };
  }

  giveBackFd(leftover: Buffer, decoded: boolean, ws?: WsHandBack): void {
    this.lentAbort = null;
    if (ws) {
      for (const m of ws.texts) this.wsOpts.text?.onMessage(m.body, m.at);
      if (ws.closed) {
        // the loop did the close handshake (RFC 6455 §7): the connection is over
        this.closeSent = true;
        this.fail(new ProbeError('BP_ERR_PEER_CLOSED', 'WebSocket close frame'));
        this.socket.end();
      } else if (ws.midMessage) {
        this.fail(new ProbeError('BP_ERR_PROTOCOL', 'the stream was handed back inside a WebSocket message'));
      }
    }
    // Leftover is plaintext for native TLS (still WebSocket-framed unless decoded), as for plain TCP.
    if (leftover.length) {
      if (decoded) this.onPayload(leftover);
      else this.onRaw(leftover);
    }
    // Records the loop's BIO read past the end are still ciphertext there; ciphertext it could not send
    // (a failed stream) goes out through Node.
    if (this.tlsSession && !this.failure && !this.socket.destroyed) {
      try {
        this.pumpTls();
      } catch (err) {
        this.fail(nativeTlsError(err));
        this.socket.destroy();
      }
    } else this.tlsSession?.free();
    if (this.savedTimeout) this.socket.setTimeout(this.savedTimeout);
    const handle = (this.socket as unknown as { _handle?: TcpHandle })._handle;
    if (handle && !this.socket.destroyed) {
      handle.reading = true;
      handle.readStart();
    }
  }

  close(): void {
    this.closedByUs = true;
    // A lent fd: the native threads work on their own duplicate (native/run.cc), so Node may close its
    // descriptor now; the run is told to stop so the duplicate is released at once.
    this.lentAbort?.();
    this.lentAbort = null;
    this.socket.destroy();
    // Now rather than at garbage collection; the addon refuses while a run still holds the session.
    this.tlsSession?.free();
  }
}
