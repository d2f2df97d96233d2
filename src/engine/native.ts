import { createRequire } from 'node:module';
import type { ErrorCode } from '../errors.js';
import { ProbeError } from '../errors.js';
import type { Point } from '../measure/speed.js';
import { packageRoot } from '../version.js';
import { JsEngine } from './jsEngine.js';
import { NativeTls, type NativeTlsAddon } from './tls.js';
import type {
  DataStream,
  Engine,
  EngineJob,
  EngineRun,
  NativeHandle,
  StreamOutcome,
  UdpJob,
  UdpOutcome,
  UdpRunHandle,
} from './types.js';

/** What the addon's Run hands back per stream (native/run.cc OnAllDone). */
interface NativeOutcome {
  points: Float64Array;
  bytes: number;
  endNs: number;
  lastNs: number;
  leftover: Buffer;
  leftoverDecoded: boolean;
  usedTrunc: boolean;
  rxPoints?: Float64Array;
  rxBytes?: number;
  /** text mode only */
  texts?: { t: number; body: Buffer }[];
  wsClosed?: boolean;
  midMessage?: boolean;
  code?: ErrorCode;
  message?: string;
}

interface NativeUdpOutcome
  extends Omit<UdpOutcome, 'txPoints' | 'rxPoints' | 'jitterMs' | 'iatJitterMs' | 'error'> {
  jitterNs: number;
  iatJitterNs: number;
  txPoints: Float64Array;
  rxPoints: Float64Array;
  code?: ErrorCode;
  message?: string;
}

interface NativeUdpRun {
  readonly port: number;
  start(t0: bigint, cb: (out: NativeUdpOutcome) => void): void;
  abort(): void;
}

interface NativeRun {
  start(cb: (out: NativeOutcome[]) => void): void;
  abort(): void;
}

export interface NativeAddon extends NativeTlsAddon {
  Run: new (spec: Record<string, unknown>) => NativeRun;
  UdpRun: new (spec: Record<string, unknown>) => NativeUdpRun;
  /** soft RLIMIT_NOFILE raised to the hard one; -1 = unlimited; null when getrlimit fails */
  raiseNofile?: () => { before: number; soft: number; hard: number } | null;
  /** the kernel's TCP_INFO of a socket in ndt7's field names; null when getsockopt fails */
  tcpInfo?: (fd: number) => Record<string, number> | null;
  abiVersion: number;
}

const root = packageRoot();

/**
 * Loads the addon with node-gyp-build: build/Release when built here, else prebuilds/<platform>-<arch>/.
 * `PREBUILDS_ONLY=1` skips build/ (so tests prove the shipped binaries load). Throws when none loads.
 */
export function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  const load = require('node-gyp-build') as ((dir: string) => unknown) & { path(dir: string): string };
  if (process.env.PREBUILDS_ONLY) {
    const path = load.path(root);
    if (!path.includes(`${'/'}prebuilds${'/'}`))
      throw new Error(`PREBUILDS_ONLY is set but node-gyp-build picked ${path}`);
  }
  const addon = load(root) as NativeAddon;
  if (addon.abiVersion !== 5) throw new Error(`native addon ABI ${addon.abiVersion}, expected 5`);
  return addon;
}

/**
 * The native engine: bulk bytes move on C++ threads (native/tcp_loop.cc); TypeScript keeps the protocol.
 * TLS streams are native when their session is (native/tls.h, `tls` here); streams it cannot drive
 * (Node's own TLS, a WebSocket frame half read) run on the js engine, and the run says so in `kind`.
 * WebSocket streams in text mode (ndt7) are native too: the loop keeps their text messages, answers
 * pings and the close, and grows the upload's messages (`scale`).
 */
export class NativeEngine implements Engine {
  readonly kind = 'native' as const;
  private readonly fallback = new JsEngine();
  /** native TLS, when this Node's OpenSSL serves it and BANDWIDTH_PROBE_NATIVE_TLS is not 0 */
  readonly tls?: NativeTls;
  /** why native TLS is off */
  readonly tlsUnavailable?: string;

  constructor(private readonly addon: NativeAddon) {
    const avail = addon.tlsAvailable();
    if (process.env.BANDWIDTH_PROBE_NATIVE_TLS === '0') this.tlsUnavailable = 'BANDWIDTH_PROBE_NATIVE_TLS=0';
    else if (!avail.ok) this.tlsUnavailable = avail.why ?? 'unavailable';
    else this.tls = new NativeTls(addon);
  }

  /** UDP on the native paced loop (native/udp_loop.cc): sendmmsg/recvmmsg, absolute deadlines. */
  async udp(job: UdpJob): Promise<UdpRunHandle> {
    const counters = new Float64Array(5);
    counters[4] = job.send?.rateBps ?? 0;
    let run: NativeUdpRun;
    try {
      run = new this.addon.UdpRun({
        bindHost: job.bindHost,
        bindPort: job.bindPort,
        peerHost: job.peerHost,
        peerPort: job.peerPort,
        connect: job.connect,
        lockPort: Boolean(job.lockPort),
        family: job.family,
        send: Boolean(job.send),
        receive: job.receive,
        ...(job.send
          ? {
              payload: job.send.payload,
              paceBytes: job.send.paceBytes,
              rateBps: job.send.rateBps,
              seqStart: job.send.seqStart,
            }
          : {}),
        ...(job.send?.tsOffset !== undefined ? { tsOffset: job.send.tsOffset } : {}),
        durationNs: job.durationNs,
        sampleNs: job.sampleNs,
        counters,
      });
    } catch (err) {
      throw new ProbeError('BP_ERR_CONNECT', (err as Error).message.replace(/^BP_ERR_CONNECT: /, ''));
    }
    const pts = (a: Float64Array): Point[] => {
      const out: Point[] = [];
      for (let k = 0; k + 1 < a.length; k += 2) out.push({ t: a[k]!, b: a[k + 1]! });
      return out;
    };
    return {
      kind: 'native',
      port: run.port,
      counters,
      setRate: (bps) => {
        counters[4] = bps;
      },
      abort: () => run.abort(),
      start: (t0 = process.hrtime.bigint()) =>
        new Promise<UdpOutcome>((resolve) =>
          run.start(t0, (o) => {
            const { jitterNs, iatJitterNs, txPoints, rxPoints, code, message, ...rest } = o;
            resolve({
              ...rest,
              jitterMs: jitterNs / 1e6,
              iatJitterMs: iatJitterNs / 1e6,
              txPoints: pts(txPoints),
              rxPoints: pts(rxPoints),
              ...(code ? { error: { code, message: message ?? code } } : {}),
            });
          }),
        ),
    };
  }

  run(streams: readonly DataStream[], job: EngineJob, t0?: readonly bigint[]): EngineRun {
    const counters = new Float64Array(streams.length);
    let aborted = false;
    let native: NativeRun | undefined;
    let delegate: EngineRun | undefined;
    let kind: 'native' | 'js' = 'native';

    const done = (async (): Promise<StreamOutcome[]> => {
      const handles = await takeAll(streams);
      if (!handles || aborted) {
        kind = 'js';
        delegate = this.fallback.run(streams, job, t0);
        if (aborted) delegate.abort();
        const out = await delegate.done;
        counters.set(delegate.counters);
        return out;
      }
      const start = process.hrtime.bigint();
      const spec: Record<string, unknown> = {
        mode: job.mode,
        framing: job.framing.kind,
        chunkSize: job.framing.kind === 'chunks' ? job.framing.chunkSize : 0,
        sampleNs: job.sampleNs,
        idleNs: job.idleTimeoutMs * 1e6,
        // Kernel-side discard of bytes nobody looks at; BANDWIDTH_PROBE_NATIVE_TRUNC=0 turns it off (bench/).
        trunc: process.env.BANDWIDTH_PROBE_NATIVE_TRUNC !== '0',
        // Batched wake-ups (SO_RCVLOWAT); BANDWIDTH_PROBE_NATIVE_LOWAT=0 turns them off (bench/).
        lowat: process.env.BANDWIDTH_PROBE_NATIVE_LOWAT !== '0',
        counters,
        streams: handles.map((h, i) => ({
          fd: h.fd,
          t0: t0?.[i] ?? start,
          pending: h.pending,
          // text mode: the decoder's state the loop resumes from (inside binary data, or between frames)
          ...(h.text
            ? {
                wsHeader: h.text.resume.header,
                wsRemaining: h.text.resume.remaining,
                wsFin: h.text.resume.fin,
                wsMaskPos: h.text.resume.maskPos,
                ...(h.text.resume.mask ? { wsMask: h.text.resume.mask } : {}),
              }
            : {}),
          ...(h.tls ? { tls: h.tls } : {}),
          ...(job.mode === 'send'
            ? {
                cont: (job.chunks[i] ?? job.chunks[0]!).cont,
                fin: (job.chunks[i] ?? job.chunks[0]!).fin,
                ...(job.scale ? { grow: job.scale.sets } : {}),
              }
            : {}),
        })),
        ws: handles[0]!.ws ?? 'none',
      };
      // ndt7: text messages kept for the stream's handler, pings answered, the close echoed in the loop
      const text = handles[0]!.text;
      if (text) {
        spec.textMax = text.max;
        spec.maxFrame = text.maxFrame;
      }
      if (job.mode === 'receive') {
        spec.maxNs = job.maxDurationMs * 1e6;
        if (job.report) spec.reportNs = job.report.intervalNs;
      } else {
        const set = job.chunks[0]!;
        spec.payloadSize = set.size;
        if (job.rateBps) spec.rateBps = job.rateBps;
        if (job.countInbound) spec.countInbound = true;
        if (job.scale) spec.scaleDivisor = job.scale.divisor;
        if (job.closeWaitMs && text) spec.closeWaitNs = job.closeWaitMs * 1e6;
        spec.maxNs = 'durationNs' in job.until ? job.until.durationNs + job.idleTimeoutMs * 1e6 : 3600e9;
        if ('durationNs' in job.until) spec.durationNs = job.until.durationNs;
        else spec.count = job.until.count;
      }
      const run = new this.addon.Run(spec);
      native = run;
      for (const s of streams) s.onCloseWhileLent?.(() => run.abort());
      const raw = await new Promise<NativeOutcome[]>((resolve) => run.start(resolve));
      return raw.map((o, i) => {
        const base = t0?.[i] ?? start;
        streams[i]!.giveBackFd!(
          o.leftover,
          o.leftoverDecoded,
          o.texts
            ? {
                texts: o.texts.map((m) => ({ at: base + BigInt(Math.round(m.t)), body: m.body })),
                closed: Boolean(o.wsClosed),
                midMessage: Boolean(o.midMessage),
              }
            : undefined,
        );
        return {
          points: pairs(o.points),
          bytes: o.bytes,
          endNs: o.endNs,
          ...(o.bytes > 0 ? { lastNs: o.lastNs } : {}),
          ...(o.rxPoints ? { rx: { bytes: o.rxBytes ?? 0, points: pairs(o.rxPoints) } } : {}),
          ...(o.code ? { error: { code: o.code, message: o.message ?? o.code } } : {}),
        };
      });
    })();

    return {
      get kind() {
        return kind;
      },
      // While the js engine drives the streams (Node's TLS), its counters are the live ones; a copy taken only
      // at the end left every progress tick of a TLS run at 0.
      get counters() {
        return delegate?.counters ?? counters;
      },
      abort: () => {
        aborted = true;
        native?.abort();
        delegate?.abort();
      },
      done,
    };
  }
}

/** (t, b) pairs from the flat arrays the addon returns. */
function pairs(a: Float64Array): Point[] {
  const out: Point[] = [];
  for (let k = 0; k + 1 < a.length; k += 2) out.push({ t: a[k]!, b: a[k + 1]! });
  return out;
}

/** Takes every stream's fd, or none: a run is native for all its streams or for none. */
async function takeAll(streams: readonly DataStream[]): Promise<NativeHandle[] | undefined> {
  if (!streams.every((s) => s.takeFd && s.giveBackFd)) return undefined;
  // Decide before taking anything: TLS and half-read frames stay with Node.
  const handles: NativeHandle[] = [];
  for (const s of streams) {
    const h = await s.takeFd!();
    if (!h) {
      // Give back what was taken so far; the js engine runs them all.
      for (const [i, taken] of handles.entries()) streams[i]!.giveBackFd!(taken.pending, true);
      return undefined;
    }
    handles.push(h);
  }
  return handles;
}
