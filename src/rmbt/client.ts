import type { Engine, EngineJob, StreamOutcome } from '../engine/types.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { EngineKind, PingSample } from '../measure/result.js';
import type { Point } from '../measure/speed.js';
import type { Channel, TlsInfo } from '../net/channel.js';
import { connectRtt, type Pacer, type ProbeOutcome, pace } from '../net/probe.js';
import { MAX_CHUNKS, parseTime } from './lines.js';
import {
  type ConnectOptions,
  type ConnectTiming,
  connectRmbt,
  type RmbtConnection,
  resolveSource,
  type Transport,
} from './transport.js';

/**
 * The RMBT client phases (specs/rmbt.md §1, §4): init, download pre-test, ping, download, upload
 * pre-test, upload, quit. This module talks protocol; the speed math lives in src/measure.
 */
export interface RmbtTestParams {
  connect: Omit<ConnectOptions, 'signal'>;
  token: string;
  /** seconds of download and of upload (GETTIME takes whole seconds); with `bytes`, the longest */
  duration: number;
  /**
   * A transfer by size (direct mode): each direction moves this many payload bytes over its
   * threads, as GETCHUNKS and a PUT of that many chunks, instead of GETTIME/PUT for `duration`.
   */
  bytes?: number;
  /** upper bound of threads (the control server's test_numthreads) */
  maxThreads: number;
  /** force this many threads instead of choosing from the pre-test */
  forceThreads?: number;
  pings: number;
  pingMinS: number;
  pretestS: number;
  ioTimeoutMs: number;
  /** measure latency under load on a connection of its own during download and upload */
  loadedLatency?: boolean;
}

export type RmbtPhase =
  | 'init'
  | 'pretest_download'
  | 'ping'
  | 'download'
  | 'pretest_upload'
  | 'upload'
  | 'end';

export type RmbtEvent =
  | { type: 'phase'; phase: RmbtPhase }
  | { type: 'progress'; phase: 'download' | 'upload'; mbps: number; bytes: number; elapsed_s: number }
  | { type: 'ping'; ms: number };

export interface DirectionRaw {
  threads: Point[][];
  totals: number[];
  chunkSize: number;
  /** server TIME per thread (download: send time + RTT; upload: final TIME) */
  serverNs: number[];
  /** when the phase's first command went out, ns after the test started (result `time_dl_ns`/`time_ul_ns`) */
  startNs: number;
}

export interface RmbtRaw {
  version: string;
  connections: (ConnectTiming & { ready_ms: number; stream: number })[];
  pings: PingSample[];
  download?: DirectionRaw;
  upload?: DirectionRaw;
  singleThreadFallback: boolean;
  /** which engine implementations moved the download and upload bytes */
  engines: Set<EngineKind>;
  /** time the test started (ms since the epoch) */
  startedMs: number;
  /** the transport the connections really used (differs from the asked one after an RMBT upgrade, F3) */
  transport?: Transport;
  /** local and server address of the first connection (result `test_ip_local`/`test_ip_server`, F13) */
  localIp?: string;
  serverIp?: string;
  /** the negotiated TLS version and cipher of the first connection (TLS transports) */
  tls?: TlsInfo;
  /** every payload byte of the test, pre-tests included (`test_total_bytes_*`) */
  totalBytes: { download: number; upload: number };
  /** round trips under load; the idle ones are `pings` */
  loaded: { download?: LoadedRaw; upload?: LoadedRaw; unavailable?: string };
}

export interface LoadedRaw {
  /** PING → PONG on the probe connection, client side */
  pings: ProbeOutcome;
  /** TCP connects of fresh connections to the measurement server */
  connects: ProbeOutcome;
}

/**
 * Loaded-latency pacing: a PING every 100 ms on the probe connection, one outstanding at
 * most, and a fresh TCP connect every second; both bounded per phase.
 */
export const LOADED_PING_MS = 100;
export const LOADED_CONNECT_MS = 1000;
const LOADED_MAX_PINGS = 30 * (1000 / LOADED_PING_MS) + 10;

/** Max pings (§4.2). */
const MAX_PINGS = 200;
/**
 * Upload chunks stay at or below 512 KiB, as RTR's own CLI caps them: servers that look for the
 * terminator byte per read() would otherwise see a false end in random payload (F15).
 */
export const MAX_UPLOAD_CHUNK = 512 * 1024;
/** Record a point at most every 10 ms (WS and PYC use 40 ms; finer points make t* interpolation tighter). */
const SAMPLE_NS = 10_000_000;

const hr = () => process.hrtime.bigint();

export interface RunOptions {
  engine: Engine;
  signal?: AbortSignal;
  onEvent?: (e: RmbtEvent) => void;
  log?: Logger;
}

export function newRaw(): RmbtRaw {
  return {
    version: '',
    connections: [],
    pings: [],
    singleThreadFallback: false,
    engines: new Set(),
    startedMs: Date.now(),
    totalBytes: { download: 0, upload: 0 },
    loaded: {},
  };
}

/**
 * Runs all phases. `raw` is filled as phases complete, so a caller still has what was measured when a
 * later phase fails.
 */
export async function runRmbtTest(
  p: RmbtTestParams,
  opt: RunOptions,
  raw: RmbtRaw = newRaw(),
): Promise<RmbtRaw> {
  const { signal } = opt;
  const emit = (e: RmbtEvent) => opt.onEvent?.(e);
  const n = Math.max(1, p.forceThreads ?? p.maxThreads);
  const testStart = hr();
  const since = () => Number(hr() - testStart);
  let conns: RmbtConnection[] = [];
  /** the loaded-latency probe connection: carries PINGs only, never bulk data */
  let probe: RmbtConnection | undefined;
  const onAbort = () => {
    for (const c of conns) c.channel.close();
    probe?.channel.close();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  // TLS by the engine's own sessions where it has them (the native engine): the bulk phases stay native.
  let connect = {
    ...p.connect,
    ...(signal ? { signal } : {}),
    ...(opt.engine.tls ? { nativeTls: opt.engine.tls } : {}),
  };
  /** k more connections, each with the token (§3.1: the token is re-sent on every connection). */
  const open = async (k: number) => {
    const settled = await Promise.allSettled(Array.from({ length: k }, () => connectRmbt(connect, p.token)));
    for (const s of settled) if (s.status === 'fulfilled') conns.push(s.value);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw toProbeError(failed.reason);
    for (const c of conns.slice(conns.length - k))
      raw.connections.push({ stream: raw.connections.length, ...c.timing });
  };
  try {
    // Phase 1: init. When the server type leaves open whether the server speaks first (F3), the first
    // connection finds out alone and the others follow what it found.
    emit({ type: 'phase', phase: 'init' });
    if (connect.detectUpgrade) {
      await open(1);
      connect = { ...connect, transport: conns[0]!.transport, detectUpgrade: false };
      await open(n - 1);
    } else await open(n);
    const first = conns[0]!;
    raw.version = first.version;
    raw.transport = first.transport;
    raw.localIp = first.channel.socket.localAddress;
    raw.serverIp = first.channel.socket.remoteAddress;
    const tlsInfo = first.channel.tlsInfo();
    if (tlsInfo) raw.tls = tlsInfo;
    const limits = first.chunk;

    // Phase 2: download pre-test on every connection.
    emit({ type: 'phase', phase: 'pretest_download' });
    const dlPre = await Promise.all(conns.map((c) => pretest(c, 'download', p, opt)));
    raw.totalBytes.download += dlPre.reduce((a, r) => a + r.bytes, 0);
    const dlBps = dlPre.reduce((a, r) => a + r.bps, 0);
    let kDown = p.forceThreads ?? Math.min(n, threadsFor(dlBps, 'download'));
    if (!p.forceThreads && dlPre[0]!.chunks <= 4) {
      // "If ≤ 4 chunks were moved in the downlink pre-test, fall back to 1 connection" (§4.1)
      kDown = 1;
      raw.singleThreadFallback = true;
    }
    const csDown = chunkFor(dlBps, limits);
    opt.log?.debug({ dlBps, kDown, csDown }, 'download pre-test');
    // Connections the download does not use are closed rather than left idle through ping and download:
    // both reference servers drop a connection idle for 30 s (F16; spec Phase 2 terminates the extras).
    const spare = conns.splice(kDown);
    // A spare becomes the loaded-latency probe connection; without one, a fresh connection is opened
    // with the same token (§3.1: any number of connections per token; both reference servers run a
    // connection per worker and take a PING on one while others are in GETTIME/PUT).
    if (p.loadedLatency !== false) probe = spare.shift();
    await Promise.all(spare.map((c) => quit(c.channel)));
    if (p.loadedLatency !== false && !probe) {
      try {
        probe = await connectRmbt(connect, p.token);
      } catch (err) {
        if (signal?.aborted) throw err;
        raw.loaded.unavailable = `the server refused a connection for latency probes: ${toProbeError(err).message}`;
        opt.log?.info({ reason: raw.loaded.unavailable }, 'no latency under load');
      }
    }
    const loadProbes = (phase: 'download' | 'upload') =>
      probe ? startLoaded(probe, raw, p, phase) : undefined;

    // Phase 3: ping on the first connection.
    emit({ type: 'phase', phase: 'ping' });
    raw.pings = await ping(first.channel, p, emit, testStart);

    // Phase 4: download.
    emit({ type: 'phase', phase: 'download' });
    raw.download = await download(conns, csDown, p, opt, emit, raw.engines, since(), () =>
      loadProbes('download'),
    );
    probe = await settleProbe(probe, raw, 'download');
    raw.totalBytes.download += raw.download.totals.reduce((a, b) => a + b, 0);

    // Phase 5: upload pre-test, on as many connections as the init opened (fresh ones replace the spares).
    emit({ type: 'phase', phase: 'pretest_upload' });
    const nUp = raw.singleThreadFallback ? 1 : n;
    if (conns.length < nUp) await open(nUp - conns.length);
    const ulPre = await Promise.all(conns.map((c) => pretest(c, 'upload', p, opt)));
    raw.totalBytes.upload += ulPre.reduce((a, r) => a + r.bytes, 0);
    const ulBps = ulPre.reduce((a, r) => a + r.bps, 0);
    const kUp = p.forceThreads ?? (raw.singleThreadFallback ? 1 : Math.min(n, threadsFor(ulBps, 'upload')));
    const csUp = Math.min(MAX_UPLOAD_CHUNK, chunkFor(ulBps, limits));
    opt.log?.debug({ ulBps, kUp, csUp }, 'upload pre-test');

    // Phase 6: upload.
    emit({ type: 'phase', phase: 'upload' });
    raw.upload = await upload(conns.slice(0, kUp), csUp, p, opt, emit, raw.engines, since(), () =>
      loadProbes('upload'),
    );
    raw.totalBytes.upload += raw.upload.totals.reduce((a, b) => a + b, 0);
    probe = await settleProbe(probe, raw, 'upload');

    await Promise.all([...conns, ...(probe ? [probe] : [])].map((c) => quit(c.channel)));
    emit({ type: 'phase', phase: 'end' });
    return raw;
  } catch (err) {
    if (signal?.aborted) throw new ProbeError('BP_ERR_ABORTED', 'the run was aborted', { cause: err });
    throw toProbeError(err);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    for (const c of conns) c.channel.close();
    probe?.channel.close();
    conns = [];
  }
}

/** A phase's probes while its bulk transfer runs; `stop` is called as soon as the transfer ends. */
interface PhaseProbes {
  stop(): Promise<void>;
}

/**
 * Starts the loaded-latency probes of one phase: PING/PONG on the probe connection (client time, as
 * the idle pings' client side) and TCP connects to the server's address, then records both in `raw`.
 */
function startLoaded(
  probe: RmbtConnection,
  raw: RmbtRaw,
  p: RmbtTestParams,
  phase: 'download' | 'upload',
): PhaseProbes {
  const ch = probe.channel;
  const pings: Pacer = pace(
    async () => {
      const x = await pingExchange(ch, p.ioTimeoutMs);
      return { ms: x.clientNs / 1e6, bytes: x.bytes };
    },
    {
      intervalMs: LOADED_PING_MS,
      maxSamples: LOADED_MAX_PINGS,
    },
  );
  const host = raw.serverIp ?? p.connect.host;
  const localAddress = resolveSource(p.connect.source, p.connect.ipVersion);
  const connects: Pacer = pace(
    async () => ({
      ms: await connectRtt({
        host,
        port: p.connect.port,
        ...(localAddress ? { localAddress } : {}),
        timeoutMs: p.ioTimeoutMs,
      }),
    }),
    // the first one half a second in, once the transfer has filled the queue
    { intervalMs: LOADED_CONNECT_MS, firstDelayMs: 500, maxSamples: 40 },
  );
  return {
    async stop() {
      const [a, b] = await Promise.all([pings.stop(), connects.stop()]);
      raw.loaded[phase] = { pings: a, connects: b };
    },
  };
}

/**
 * After a phase: a probe connection that failed or still has a PING under way is closed and not used
 * again (the next phase says why there are no samples).
 */
async function settleProbe(
  probe: RmbtConnection | undefined,
  raw: RmbtRaw,
  phase: 'download' | 'upload',
): Promise<RmbtConnection | undefined> {
  const got = raw.loaded[phase]?.pings;
  if (!probe || !got || (!got.error && !got.pending)) return probe;
  probe.channel.close();
  const why = got.error ?? 'a PING was still unanswered when the transfer ended';
  raw.loaded.unavailable ??= `the latency probe connection failed during the ${phase}: ${why}`;
  return undefined;
}

/**
 * One PING exchange (§3.2 PING): PING → PONG → OK → TIME → ACCEPT. Client time runs from sending PING
 * to receiving PONG; the server's TIME is its own PONG → OK time. Used by the ping phase and, under
 * load, by the probe connection; `bytes` counts the payload both ways.
 */
async function pingExchange(
  ch: Channel,
  timeoutMs: number,
): Promise<{ t1: bigint; clientNs: number; serverNs: number; bytes: number }> {
  const t1 = hr();
  ch.writeLine('PING');
  await expectLine(ch, 'PONG', timeoutMs);
  const clientNs = Number(hr() - t1);
  ch.writeLine('OK');
  const time = await ch.readLine(timeoutMs);
  const t = parseTime(time);
  const accept = await ch.readLine(timeoutMs);
  expectAccept(accept);
  // PING\n PONG\n OK\n, the TIME line and the ACCEPT line with their newlines
  return { t1, clientNs, serverNs: t.ns, bytes: 13 + time.length + accept.length + 2 };
}

/** WS thresholds (§4.1): download >1 Mbit/s → 3, >100 → 5; upload >30 → 2, >80 → 3, >150 → 5. */
export function threadsFor(bps: number, dir: 'download' | 'upload'): number {
  const mbps = bps / 1e6;
  if (dir === 'download') return mbps > 100 ? 5 : mbps > 1 ? 3 : 1;
  return mbps > 150 ? 5 : mbps > 80 ? 3 : mbps > 30 ? 2 : 1;
}

/** One chunk about every 20 ms: total bytes/s ÷ 50, floored to KiB, clamped to the server's range (§4.1). */
export function chunkFor(
  bps: number,
  limits: { def: number; min: number; max: number; dynamic: boolean },
): number {
  if (!limits.dynamic) return limits.def;
  const cs = Math.floor(bps / 8 / 50 / 1024) * 1024;
  return Math.min(limits.max, Math.max(limits.min, cs));
}

function expectAccept(line: string): void {
  if (line === 'ERR') throw new ProbeError('BP_ERR_RMBT_SERVER', 'the server answered ERR');
  if (!line.startsWith('ACCEPT'))
    throw new ProbeError('BP_ERR_PROTOCOL', `expected ACCEPT, got ${JSON.stringify(line.slice(0, 80))}`);
}

function csArg(c: RmbtConnection, cs: number): string {
  // v0.3 servers take no chunk-size argument (§5)
  return c.chunk.dynamic ? ` ${cs}` : '';
}

/**
 * The first failed stream as a coded error. A close before the first whole chunk arrived is how RMBTD
 * refuses a chunk size (silently, §3.2), and our server says ERR first; either way, say so.
 */
function firstError(outcomes: StreamOutcome[], job: EngineJob): ProbeError | undefined {
  const bad = outcomes.find((o) => o.error);
  if (!bad?.error) return undefined;
  if (
    job.mode === 'receive' &&
    job.framing.kind === 'chunks' &&
    bad.error.code === 'BP_ERR_PEER_CLOSED' &&
    bad.bytes === 0
  ) {
    return new ProbeError(
      'BP_ERR_RMBT_CHUNKSIZE',
      `the server closed the connection before the first ${job.framing.chunkSize}-byte chunk; it refuses this chunk size or dropped the connection`,
    );
  }
  if (
    job.mode === 'receive' &&
    job.framing.kind === 'chunks' &&
    bad.bytes > 0 &&
    bad.bytes < job.framing.chunkSize &&
    (bad.error.code === 'BP_ERR_STALLED' ||
      bad.error.code === 'BP_ERR_TIMEOUT' ||
      bad.error.code === 'BP_ERR_PEER_CLOSED')
  ) {
    // A few bytes and then silence or a close: an answer line (RUSTD's `ERR` and its next ACCEPT; our
    // server's `ERR` before it closes) instead of data.
    return new ProbeError(
      'BP_ERR_RMBT_SERVER',
      `the server sent ${bad.bytes} bytes instead of a ${job.framing.chunkSize}-byte chunk and stopped: an ERR answer (a duration, count or chunk size outside its limits)`,
    );
  }
  return ProbeError.fromJSON(bad.error);
}

/**
 * Pre-test rounds on one connection (§4.1, WS variant): GETCHUNKS / PUTNORESULT with the chunk count
 * doubling up to 8, then the chunk size doubling, until d seconds have passed; the block in progress is
 * always finished. The estimate is the last round's bytes over its server TIME.
 */
async function pretest(c: RmbtConnection, dir: 'download' | 'upload', p: RmbtTestParams, opt: RunOptions) {
  const { channel } = c;
  const end = hr() + BigInt(Math.round(p.pretestS * 1e9));
  // Upload chunks never grow past MAX_UPLOAD_CHUNK (F15), pre-test included.
  const maxCs = dir === 'upload' ? Math.min(c.chunk.max, MAX_UPLOAD_CHUNK) : c.chunk.max;
  let n = 1;
  let cs = c.chunk.def;
  let chunks = 0;
  let bps = 0;
  let total = 0;
  do {
    const bytes = n * cs;
    if (dir === 'download') {
      channel.writeLine(`GETCHUNKS ${n}${csArg(c, cs)}`);
      await dataOrErr(channel, 'GETCHUNKS', cs, p, opt.engine);
      const out = await runJob(opt.engine, [channel], receiveJob(cs, p, 30), opt.signal);
      if (out[0]!.bytes !== bytes)
        throw new ProbeError('BP_ERR_RMBT_CHUNKSIZE', `asked for ${bytes} bytes, got ${out[0]!.bytes}`);
      channel.writeLine('OK');
    } else {
      channel.writeLine(`PUTNORESULT${csArg(c, cs)}`);
      await expectLine(channel, 'OK', p.ioTimeoutMs);
      const set = channel.chunkSet(cs, true);
      await runJob(opt.engine, [channel], sendJob(set, { count: n }, p), opt.signal);
    }
    const t = parseTime(await channel.readLine(p.ioTimeoutMs));
    expectAccept(await channel.readLine(p.ioTimeoutMs));
    chunks += n;
    total += bytes;
    if (t.ns > 0) bps = (bytes * 8 * 1e9) / t.ns;
    if (n < 8) n *= 2;
    else if (c.chunk.dynamic) cs = Math.max(cs, Math.min(cs * 2, maxCs));
  } while (hr() < end);
  return { bps, chunks, cs, bytes: total };
}

/**
 * Waits for the first bytes after GETCHUNKS and tells an `ERR` line from chunk data: the Rust server
 * answers ERR and keeps the connection to a count, duration or chunk size outside its limits (F17;
 * RUSTD commands.rs), which the framing would otherwise read as the start of a chunk. RMBTD closes
 * silently instead (§3.2), which is said as a refused chunk size. The engine takes the stream in the
 * same tick, so nothing piles up in JS meanwhile.
 */
async function dataOrErr(
  ch: Channel,
  cmd: string,
  cs: number,
  p: RmbtTestParams,
  engine: Engine,
): Promise<void> {
  // A WebSocket frame read here would stay half-decoded in JS and keep the native loop from taking the
  // socket; there the engine's outcome is classified afterwards instead (firstError).
  if (ch.wsRole && engine.kind === 'native') return;
  const head = await ch.peekBytes(4, p.ioTimeoutMs).catch((err: ProbeError) => {
    if (err.code === 'BP_ERR_PEER_CLOSED')
      throw new ProbeError(
        'BP_ERR_RMBT_CHUNKSIZE',
        `the server closed the connection after ${cmd} before sending data; it refuses the chunk size ${cs} or dropped the connection`,
      );
    if (err.code === 'BP_ERR_TIMEOUT')
      throw new ProbeError('BP_ERR_STALLED', `no data within ${p.ioTimeoutMs} ms after ${cmd}`);
    throw err;
  });
  if (head.toString('latin1') === 'ERR\n') {
    await ch.readLine(p.ioTimeoutMs);
    throw new ProbeError(
      'BP_ERR_RMBT_SERVER',
      `the server answered ERR to ${cmd} (a duration, count or chunk size of ${cs} outside its limits)`,
    );
  }
}

async function errLineWaiting(ch: Channel): Promise<boolean> {
  // Buffered bytes count even when the server closed right after its ERR (ours does).
  if (!(await ch.hasData(200).catch(() => false))) return false;
  const head = await ch.peekBytes(4, 200).catch(() => undefined);
  return head?.toString('latin1') === 'ERR\n';
}

async function expectLine(ch: Channel, want: string, timeoutMs: number): Promise<void> {
  const line = await ch.readLine(timeoutMs);
  if (line === 'ERR')
    throw new ProbeError('BP_ERR_RMBT_CHUNKSIZE', 'the server answered ERR (chunk size out of range?)');
  if (line !== want)
    throw new ProbeError('BP_ERR_PROTOCOL', `expected ${want}, got ${JSON.stringify(line.slice(0, 80))}`);
}

/**
 * Chunks per thread for a transfer of `bytes` over `threads` connections: at least one, at most the
 * servers' GETCHUNKS limit (MAX_CHUNKS, specs/rmbt.md §3.2), which a larger size is refused against.
 */
export function chunksFor(bytes: number, threads: number, cs: number): number {
  const n = Math.max(1, Math.ceil(bytes / Math.max(1, threads) / cs));
  if (n > MAX_CHUNKS)
    throw new ProbeError(
      'BP_ERR_CONFIG',
      `bytes ${bytes} needs ${n} chunks of ${cs} bytes per thread; servers take at most ${MAX_CHUNKS} (use more threads or a smaller bytes)`,
    );
  return n;
}

function receiveJob(cs: number, p: RmbtTestParams, seconds: number): EngineJob {
  return {
    mode: 'receive',
    framing: { kind: 'chunks', chunkSize: cs },
    sampleNs: SAMPLE_NS,
    idleTimeoutMs: p.ioTimeoutMs,
    maxDurationMs: seconds * 1000 + p.ioTimeoutMs,
  };
}

function sendJob(
  set: ReturnType<Channel['chunkSet']>,
  until: { count: number } | { durationNs: number },
  p: RmbtTestParams,
): EngineJob {
  return {
    mode: 'send',
    framing: { kind: 'chunks', chunkSize: set.size },
    chunks: [set],
    until,
    sampleNs: SAMPLE_NS,
    idleTimeoutMs: p.ioTimeoutMs,
  };
}

/** Runs a job, aborting it with the signal; a failed stream becomes a thrown coded error. */
async function runJob(
  engine: Engine,
  streams: Channel[],
  job: EngineJob,
  signal: AbortSignal | undefined,
  t0?: bigint[],
  onTick?: (counters: Float64Array) => void,
  kinds?: Set<EngineKind>,
  /** a transfer by size that has not finished by then fails with this message (`bytes`) */
  deadline?: { ms: number; message: string },
): Promise<StreamOutcome[]> {
  const run = engine.run(streams, job, t0);
  const abort = () => run.abort();
  signal?.addEventListener('abort', abort, { once: true });
  const tick = onTick ? setInterval(() => onTick(run.counters), 250) : undefined;
  let late = false;
  const timer =
    deadline &&
    setTimeout(() => {
      late = true;
      run.abort();
    }, deadline.ms);
  try {
    const out = await run.done;
    if (late) throw new ProbeError('BP_ERR_TIMEOUT', deadline!.message);
    kinds?.add(run.kind);
    const err = firstError(out, job);
    if (
      err?.code === 'BP_ERR_STALLED' ||
      err?.code === 'BP_ERR_TIMEOUT' ||
      err?.code === 'BP_ERR_PEER_CLOSED'
    ) {
      // The native loop waits for whole chunks (a receive low-water mark), so a short ERR answer can
      // still sit unread in the socket; back with Node, it is read as the line it is (F17).
      for (const [i, o] of out.entries()) {
        if (o.error && (await errLineWaiting(streams[i]!)))
          throw new ProbeError(
            'BP_ERR_RMBT_SERVER',
            'the server answered ERR instead of sending data (a duration, count or chunk size outside its limits)',
          );
      }
    }
    if (err) throw err;
    return out;
  } finally {
    if (tick) clearInterval(tick);
    if (timer) clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }
}

/** The wall-clock bound of a transfer by size: `duration`, the longest it may take. */
const bySizeDeadline = (p: RmbtTestParams, dir: string) =>
  p.bytes
    ? {
        ms: p.duration * 1000 + p.ioTimeoutMs,
        message: `the ${dir} of ${p.bytes} bytes did not finish within duration (${p.duration} s) plus io_timeout; raise duration or lower bytes`,
      }
    : undefined;

/**
 * Ping (§4.2): PING → PONG → OK → TIME, one after another on one connection, at least `pings` times and
 * at least `pingMinS` seconds, at most 200. Client time runs from sending PING to receiving PONG; the
 * server's TIME is the figure RMBT reports.
 */
async function ping(
  ch: Channel,
  p: RmbtTestParams,
  emit: (e: RmbtEvent) => void,
  testStart: bigint,
): Promise<PingSample[]> {
  const out: PingSample[] = [];
  const start = hr();
  const minEnd = start + BigInt(Math.round(p.pingMinS * 1e9));
  while (out.length < MAX_PINGS && (out.length < p.pings || hr() < minEnd)) {
    const x = await pingExchange(ch, p.ioTimeoutMs);
    // time_ns: "relative time from the start of the test" (CTRL PingRequest; F13), not of the ping phase
    out.push({ clientNs: x.clientNs, serverNs: x.serverNs, timeNs: Number(x.t1 - testStart) });
    emit({ type: 'ping', ms: x.serverNs / 1e6 });
  }
  return out;
}

function progress(phase: 'download' | 'upload', emit: (e: RmbtEvent) => void) {
  let lastBytes = 0;
  let last = hr();
  const start = last;
  return (counters: Float64Array) => {
    const now = hr();
    const bytes = counters.reduce((a, b) => a + b, 0);
    const dt = Number(now - last) / 1e9;
    if (dt > 0) {
      emit({
        type: 'progress',
        phase,
        bytes,
        mbps: ((bytes - lastBytes) * 8) / dt / 1e6,
        elapsed_s: Number(now - start) / 1e9,
      });
    }
    lastBytes = bytes;
    last = now;
  };
}

/** Download (§4.3): every thread sends GETTIME at once, receives until the 0xFF chunk, then OK → TIME. */
async function download(
  conns: RmbtConnection[],
  cs: number,
  p: RmbtTestParams,
  opt: RunOptions,
  emit: (e: RmbtEvent) => void,
  kinds: Set<EngineKind>,
  startNs: number,
  probes?: () => PhaseProbes | undefined,
): Promise<DirectionRaw> {
  const t0: bigint[] = [];
  const during = probes?.();
  const count = p.bytes ? chunksFor(p.bytes, conns.length, cs) : 0;
  for (const c of conns) {
    // GETCHUNKS: the server's TIME after our OK covers the same span as after GETTIME (§3.2)
    c.channel.writeLine(count ? `GETCHUNKS ${count}${csArg(c, cs)}` : `GETTIME ${p.duration}${csArg(c, cs)}`);
    t0.push(hr());
  }
  const channels = conns.map((c) => c.channel);
  // No peek here (unlike the pre-test): while the slowest thread's first bytes are awaited the others
  // would pile megabytes into JS. An ERR to GETTIME is told apart by its outcome (firstError).
  const out = await runJob(
    opt.engine,
    channels,
    receiveJob(cs, p, p.duration + (p.bytes ? 3600 : 0)),
    opt.signal,
    t0,
    progress('download', emit),
    kinds,
    bySizeDeadline(p, 'download'),
  ).finally(() => during?.stop());
  const serverNs = await Promise.all(
    channels.map(async (ch) => {
      ch.writeLine('OK');
      const t = parseTime(await ch.readLine(p.ioTimeoutMs));
      expectAccept(await ch.readLine(p.ioTimeoutMs));
      return t.ns;
    }),
  );
  return {
    threads: out.map((o) => o.points),
    totals: out.map((o) => o.bytes),
    chunkSize: cs,
    serverNs,
    startNs,
  };
}

/**
 * Upload (§4.4) with PUT and the server's TIME/BYTES feedback: the points are the server's receive times,
 * the spec's intended method. Each thread waits for OK before sending data (no pipelining, §3), sends
 * for `duration` seconds after the OK, then one chunk ending in 0xFF, and reads feedback until the final
 * `TIME <ns>` (two words; four words are intermediate, §3.2).
 */
async function upload(
  conns: RmbtConnection[],
  cs: number,
  p: RmbtTestParams,
  opt: RunOptions,
  emit: (e: RmbtEvent) => void,
  kinds: Set<EngineKind>,
  startNs: number,
  probes?: () => PhaseProbes | undefined,
): Promise<DirectionRaw> {
  const channels = conns.map((c) => c.channel);
  const t0 = await Promise.all(
    conns.map(async (c) => {
      c.channel.writeLine(`PUT${csArg(c, cs)}`);
      await expectLine(c.channel, 'OK', p.ioTimeoutMs);
      return hr();
    }),
  );
  const sets = channels.map((ch) => ch.chunkSet(cs, true));
  const job: EngineJob = {
    mode: 'send',
    framing: { kind: 'chunks', chunkSize: cs },
    chunks: sets,
    // by size: that many chunks, the last one ending in 0xFF, as after a timed PUT
    until: p.bytes ? { count: chunksFor(p.bytes, conns.length, cs) } : { durationNs: p.duration * 1e9 },
    sampleNs: SAMPLE_NS,
    idleTimeoutMs: p.ioTimeoutMs,
  };
  const during = probes?.();
  const out = await runJob(
    opt.engine,
    channels,
    job,
    opt.signal,
    t0,
    progress('upload', emit),
    kinds,
    bySizeDeadline(p, 'upload'),
  ).finally(() => during?.stop());
  const feedback = await Promise.all(
    channels.map(async (ch, i) => {
      const points: Point[] = [];
      // w2 = 3 s (§1 constants): how long we wait for the server's last word after our last chunk.
      const wait = p.ioTimeoutMs + 3000;
      // The server reports at most about every 1 ms (§3.2 PUT): more lines than that, or a byte count
      // past what we sent, is a hostile or broken server, never an "ok" with an impossible figure.
      const maxLines = p.duration * 2000 + 2000;
      const sent = out[i]!.bytes + cs;
      const deadline = Date.now() + wait;
      for (let n = 0; ; n++) {
        if (n > maxLines || Date.now() > deadline)
          throw new ProbeError('BP_ERR_PROTOCOL', `the server sent more than ${maxLines} upload reports`);
        const t = parseTime(await ch.readLine(wait));
        if (t.bytes !== undefined && t.bytes > sent)
          throw new ProbeError(
            'BP_ERR_PROTOCOL',
            `the server reports ${t.bytes} bytes received; ${out[i]!.bytes} were sent`,
          );
        if (t.bytes === undefined) {
          expectAccept(await ch.readLine(p.ioTimeoutMs));
          return { points, finalNs: t.ns };
        }
        const prev = points[points.length - 1];
        if (!prev || (t.ns > prev.t && t.bytes >= prev.b)) points.push({ t: t.ns, b: t.bytes });
      }
    }),
  );
  return {
    threads: feedback.map((f, i) => withFinal(f.points, f.finalNs, out[i]!.bytes)),
    totals: out.map((o) => o.bytes),
    chunkSize: cs,
    serverNs: feedback.map((f) => f.finalNs),
    startNs,
  };
}

/** The final TIME marks when the server read the last chunk: by then it had every byte we sent. */
function withFinal(points: Point[], finalNs: number, total: number): Point[] {
  const last = points[points.length - 1];
  if (!last || (finalNs > last.t && total >= last.b)) points.push({ t: finalNs, b: total });
  return points;
}

async function quit(ch: Channel): Promise<void> {
  if (ch.closed) return;
  ch.writeLine('QUIT');
  await ch.readLine(2000).catch(() => undefined);
  ch.close();
}
