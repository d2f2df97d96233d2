import type { Socket } from 'node:net';
import type { ErrorCode, ProbeError } from '../errors.js';
import type { EngineKind } from '../measure/result.js';
import type { Point } from '../measure/speed.js';
import type { NativeTls, NativeTlsSession } from './tls.js';

/**
 * The engine contract (design.md "Engine contract"). TypeScript does the protocol handshake; an engine
 * moves the bulk bytes of one phase over already-connected streams and reports counters and series.
 * Engines know framing, never protocol commands.
 */

/** How bytes are delimited: chunks end in a terminator byte (0x00 more, 0xFF last; RMBT's framing), or raw. */
export type Framing = { kind: 'chunks'; chunkSize: number } | { kind: 'raw' };

/** Where an engine delivers inbound payload bytes while it owns a stream. */
export interface StreamSink {
  data(buf: Buffer): void;
  end(err: ProbeError): void;
}

/**
 * One connected byte stream as an engine sees it. Transport details (TLS, WebSocket frames) stay inside:
 * inbound bytes arrive as payload, outbound chunks come pre-framed from `chunkSet`.
 */
export interface DataStream {
  readonly socket: Socket;
  /** Start routing inbound payload to `sink` (bytes already buffered are delivered first). */
  attach(sink: StreamSink): void;
  /** Stop routing; `leftover` (bytes read past the end of the phase) is put back for the protocol reader. */
  detach(leftover?: Buffer): void;
  /** Write pre-framed bytes; false means wait for `onceDrain`. */
  write(buf: Buffer): boolean;
  onceDrain(cb: () => void): void;
  /** One protocol line, framed for the transport (used for RMBT PUT feedback). */
  writeLine(line: string): void;
  /** Framed copies of chunks of `size` payload bytes: several "more follows" variants and one last chunk. */
  chunkSet(size: number, terminated: boolean): ChunkSet;
  /**
   * For the native engine: waits until every queued write has reached the kernel, then stops Node from
   * reading and hands over the fd with the payload already buffered. Undefined when the stream cannot be
   * driven natively (Node's own TLS, or a WebSocket frame half read).
   */
  takeFd?(): Promise<NativeHandle | undefined>;
  /**
   * Gives the fd back: `leftover` is raw socket bytes, or payload when `decoded`; `ws` is what a
   * WebSocket stream in text mode saw meanwhile (its text messages, a close handshake, an end inside a
   * message).
   */
  giveBackFd?(leftover: Buffer, decoded: boolean, ws?: WsHandBack): void;
  /**
   * While the fd is lent: what to call when the stream is closed or fails meanwhile (the engine aborts
   * the run, so its threads stop at once instead of at their deadline). Cleared by giveBackFd.
   */
  onCloseWhileLent?(cb: () => void): void;
}

/** Where the loop resumes decoding (src/net/ws.ts WsDecoder.handOver). */
export interface WsResume {
  readonly header: Buffer;
  readonly remaining: number;
  readonly fin: boolean;
  readonly mask?: Buffer;
  readonly maskPos: number;
}

/** What a native loop hands back about a WebSocket stream in text mode (ndt7). */
export interface WsHandBack {
  /** the text messages, with the time each one completed (process.hrtime.bigint() clock) */
  readonly texts: readonly { readonly at: bigint; readonly body: Buffer }[];
  /** the close handshake took place: nothing more may be sent or read */
  readonly closed: boolean;
  /** the stream stopped inside a message: the rest of it cannot be decoded */
  readonly midMessage: boolean;
}

export interface NativeHandle {
  fd: number;
  pending: Buffer;
  ws: 'client' | 'server' | null;
  /**
   * Text mode (ndt7): text messages up to `max` bytes are gathered for the stream's handler, pings are
   * answered and a close is echoed by the loop; frames up to `maxFrame` bytes are accepted.
   */
  text?: { readonly max: number; readonly maxFrame: number; readonly resume: WsResume };
  /** a native TLS stream's session: the loop reads and writes records through it */
  tls?: NativeTlsSession;
}

export interface ChunkSet {
  /** payload bytes per chunk (what counts, excluding frame headers) */
  readonly size: number;
  readonly cont: readonly Buffer[];
  /** the last chunk (terminator 0xFF); for raw framing the same as a cont chunk */
  readonly fin: Buffer;
}

export interface ReceiveJob {
  readonly mode: 'receive';
  readonly framing: Framing;
  /** record a point at most this often (ns) */
  readonly sampleNs: number;
  /** no inbound byte for this long ends the stream with BP_ERR_STALLED */
  readonly idleTimeoutMs: number;
  /** hard stop (ms after start) for a peer that never sends the last chunk */
  readonly maxDurationMs: number;
  /** RMBT PUT: send `TIME <ns> BYTES <n>` at most every `intervalNs` (specs/rmbt.md §3.2 PUT) */
  readonly report?: { readonly intervalNs: number };
}

export interface SendJob {
  readonly mode: 'send';
  readonly framing: Framing;
  readonly chunks: readonly ChunkSet[];
  /** stop after this long (the last chunk is the first one started at or after it), or after n chunks */
  readonly until: { readonly durationNs: number } | { readonly count: number };
  readonly sampleNs: number;
  readonly idleTimeoutMs: number;
  /** pace chunks to this rate in bit/s (btest speed limits); absent or 0 = as fast as TCP takes them */
  readonly rateBps?: number;
  /** what arrives meanwhile is data to count and drop (btest TCP both), not words to hand back */
  readonly countInbound?: boolean;
  /**
   * WebSocket streams in text mode: after the last message, send the close frame and read the peer's
   * last messages until its close, at most this long. The native engine does it in its loop (the
   * stream is then closed); the js engine leaves it to the caller, who sees the stream still open.
   */
  readonly closeWaitMs?: number;
  /**
   * Growing messages (ndt7, its spec's appendix "Message size"): the next of these larger sets is used
   * once its size is at most 1/`divisor` of the payload sent so far (both engines).
   */
  readonly scale?: { readonly sets: readonly ChunkSet[]; readonly divisor: number };
}

export type EngineJob = ReceiveJob | SendJob;

export interface StreamOutcome {
  /** (t ns since the stream's t0, cumulative payload bytes) */
  readonly points: Point[];
  readonly bytes: number;
  /** ns since t0 when the stream finished */
  readonly endNs: number;
  /** ns since t0 of the last payload bytes (absent when none came or went) */
  readonly lastNs?: number;
  readonly error?: { readonly code: ErrorCode; readonly message: string };
  /** send jobs with countInbound: what arrived meanwhile */
  readonly rx?: { readonly bytes: number; readonly points: Point[] };
}

export interface EngineRun {
  /** which implementation moved the bytes (the native engine hands streams it cannot drive to js) */
  readonly kind: EngineKind;
  /** live cumulative payload bytes per stream, readable at any time without a call into the engine */
  readonly counters: Float64Array;
  abort(): void;
  readonly done: Promise<StreamOutcome[]>;
}

export interface Engine extends UdpEngine {
  readonly kind: EngineKind;
  /** TLS sessions the engine can drive in its bulk phases (native engine, when available) */
  readonly tls?: NativeTls;
  /** why an engine that could drive TLS does not here (e.g. no OpenSSL symbols in this Node) */
  readonly tlsUnavailable?: string;
  /**
   * Runs one job on every stream at once. `t0` (process.hrtime.bigint) per stream is the time origin of
   * its points, e.g. when GETTIME was written; default is the call time. Never rejects for network
   * conditions: a failed stream carries `error`.
   */
  run(streams: readonly DataStream[], job: EngineJob, t0?: readonly bigint[]): EngineRun;
}

/**
 * UDP (btest, specs/btest.md §7): the engine owns the socket. One job may send and receive on it at once.
 * Datagrams carry a u32 big-endian sequence number at offset 0; optionally a u64 big-endian send time
 * (monotonic ns) at `tsOffset` for RFC 3550 jitter between two of our own peers.
 */
export interface UdpJob {
  bindHost: string;
  bindPort: number;
  peerHost: string;
  peerPort: number;
  /** false: accept datagrams from any source port of the peer's address (NAT, §7) */
  connect: boolean;
  /**
   * unconnected: once a datagram is taken, only its source port (the NAT-rewritten one, if any) is
   * accepted: forged datagrams from other ports of the peer's address are foreign
   */
  lockPort?: boolean;
  family: 4 | 6;
  send?: { payload: number; paceBytes: number; rateBps: number; seqStart: number; tsOffset?: number };
  receive: boolean;
  durationNs: number;
  sampleNs: number;
}

export interface UdpOutcome {
  sentPackets: number;
  sentBytes: number;
  packets: number;
  bytes: number;
  lost: number;
  duplicates: number;
  reordered: number;
  /** datagrams from other addresses, ignored */
  foreign: number;
  /** RFC 3550 interarrival jitter from send timestamps (0 without them) */
  jitterMs: number;
  /** mean absolute deviation of inter-arrival times (needs no timestamps) */
  iatJitterMs: number;
  kernelTimestamps: boolean;
  txPoints: Point[];
  rxPoints: Point[];
  error?: { code: ErrorCode; message: string };
}

export interface UdpRunHandle {
  readonly kind: EngineKind;
  /** the local port actually bound */
  readonly port: number;
  /** live [tx bytes, rx bytes, rx packets, lost, send rate] */
  readonly counters: Float64Array;
  /** changes the send rate while running (btest's adaptation to the peer's status) */
  setRate(bps: number): void;
  start(t0?: bigint): Promise<UdpOutcome>;
  abort(): void;
}

export interface UdpEngine {
  /** Opens and binds the socket (rejects with BP_ERR_CONNECT when it cannot); start() runs the job. */
  udp(job: UdpJob): Promise<UdpRunHandle>;
}
