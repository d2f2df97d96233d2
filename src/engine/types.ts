import type { Socket } from 'node:net';
import type { ErrorCode, ProbeError } from '../errors.js';
import type { EngineKind } from '../measure/result.js';
import type { Point } from '../measure/speed.js';

/**
 * The engine contract (design.md "Engine contract"). TypeScript does the protocol handshake; an engine
 * moves the bulk bytes of one phase over already-connected streams and reports counters and series.
 * Engines know framing, never protocol commands.
 */

/** How bytes are delimited: RMBT chunks end in a terminator byte (0x00 more, 0xFF last); btest is raw. */
export type Framing = { kind: 'rmbt'; chunkSize: number } | { kind: 'raw' };

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
   * driven natively (TLS, or a WebSocket frame half read).
   */
  takeFd?(): Promise<NativeHandle | undefined>;
  /** Gives the fd back: `leftover` is raw socket bytes, or payload when `decoded`. */
  giveBackFd?(leftover: Buffer, decoded: boolean): void;
}

export interface NativeHandle {
  fd: number;
  pending: Buffer;
  ws: 'client' | 'server' | null;
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
}

export type EngineJob = ReceiveJob | SendJob;

export interface StreamOutcome {
  /** (t ns since the stream's t0, cumulative payload bytes) */
  readonly points: Point[];
  readonly bytes: number;
  /** ns since t0 when the stream finished */
  readonly endNs: number;
  readonly error?: { readonly code: ErrorCode; readonly message: string };
}

export interface EngineRun {
  /** which implementation moved the bytes (the native engine hands streams it cannot drive to js) */
  readonly kind: EngineKind;
  /** live cumulative payload bytes per stream, readable at any time without a call into the engine */
  readonly counters: Float64Array;
  abort(): void;
  readonly done: Promise<StreamOutcome[]>;
}

export interface Engine {
  readonly kind: EngineKind;
  /**
   * Runs one job on every stream at once. `t0` (process.hrtime.bigint) per stream is the time origin of
   * its points, e.g. when GETTIME was written; default is the call time. Never rejects for network
   * conditions: a failed stream carries `error`.
   */
  run(streams: readonly DataStream[], job: EngineJob, t0?: readonly bigint[]): EngineRun;
}
