import type { GeneralSettings } from '../config/schema.js';
import type { Engine, StreamOutcome, UdpOutcome } from '../engine/types.js';
import { ProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { type LatencyResult, latencyResult, latencySet } from '../measure/latency.js';
import { type Ramp, rampEnd } from '../measure/ramp.js';
import { type DirectionResult, markFailed, type RunResult, startResult } from '../measure/result.js';
import { intervalSeries, type Point, round3 } from '../measure/speed.js';
import { splitHostPort } from '../net/hostport.js';
import { type BtestEvent, type BtestParams, type BtestRaw, runBtest } from './client.js';
import type { Status } from './codec.js';
import type { BtestSettings } from './settings.js';

export interface BtestContext {
  engine: Engine;
  general: GeneralSettings;
  log?: Logger;
  signal?: AbortSignal;
  onEvent?: (e: BtestEvent) => void;
  targetId?: string;
}

const SECOND = 1e9;

/** Average over the whole test and a per-second series from per-stream (t, bytes) points. */
function fromPoints(
  streams: Point[][],
  totals: number[],
  durationNs: number,
  timing: 'client' | 'server',
): DirectionResult {
  const bytes = totals.reduce((a, b) => a + b, 0);
  return {
    mbps: round3((bytes * 8 * 1e3) / durationNs),
    bytes,
    bytes_total: bytes,
    duration_ms: round3(durationNs / 1e6),
    streams: streams.length,
    timing,
    series: intervalSeries(streams, durationNs, SECOND),
    per_stream: totals.map((total, i) => ({
      stream: i,
      bytes: total,
      bytes_at_t_star: total,
      duration_ms: round3(durationNs / 1e6),
      mbps: round3((total * 8 * 1e3) / durationNs),
    })),
  };
}

/** What the server says it received, second by second (§9: the peer's status is the transmit speed). */
function fromStatus(st: Status[]): DirectionResult | undefined {
  const seconds = st.filter((s) => s.seq > 0);
  // The bytes field is a u32 per second: at 2^32 − 1 (34.4 Gbit/s, loopback only) it says nothing.
  if (!seconds.length || seconds.some((s) => s.bytes >= 0xffffffff)) return undefined;
  const bytes = seconds.reduce((a, s) => a + s.bytes, 0);
  const durationNs = seconds.length * SECOND;
  return {
    mbps: round3((bytes * 8 * 1e3) / durationNs),
    bytes,
    bytes_total: bytes,
    duration_ms: durationNs / 1e6,
    streams: 1,
    timing: 'server',
    series: seconds.map((s, i) => ({ t_ms: (i + 1) * 1000, mbps: round3((s.bytes * 8) / 1e6) })),
    per_stream: [],
  };
}

function udpFigures(u: UdpOutcome): DirectionResult['udp'] {
  const expected = u.packets + u.lost;
  return {
    packets: u.packets,
    lost: u.lost,
    loss_percent: expected ? round3((u.lost / expected) * 100) : 0,
    duplicates: u.duplicates,
    reordered: u.reordered,
    jitter_ms: round3(u.jitterMs || u.iatJitterMs),
    jitter_kind: u.jitterMs ? 'rfc3550' : 'interarrival',
  };
}

export function btestParams(s: BtestSettings): BtestParams {
  if (!s.host) throw new ProbeError('BP_ERR_CONFIG', 'set btest.host (the router or btest server)');
  const hp = splitHostPort(s.host);
  return {
    host: hp.host,
    port: hp.port ?? 2000,
    ...(s.user ? { user: s.user, password: s.password ?? '' } : {}),
    protocol: s.protocol,
    direction: s.direction,
    connections: s.connections,
    durationS: s.duration,
    ...(s.bytes ? { bytes: s.bytes } : {}),
    localTxSpeed: s.local_tx_speed,
    remoteTxSpeed: s.remote_tx_speed,
    udpSize: s.udp_size,
    randomData: s.random_data,
    ipVersion: s.ip_version,
    ioTimeoutMs: s.io_timeout * 1000,
    loadedLatency: s.loaded_latency,
  };
}

/** One btest measurement into the common result model; never throws (failures are results). */
export async function measureBtest(s: BtestSettings, ctx: BtestContext): Promise<RunResult> {
  const started = new Date();
  const result: RunResult = {
    ...startResult(
      { id: ctx.targetId ?? 'btest', kind: 'btest' },
      { host: s.host ?? '', port: 0, transport: s.protocol },
      ctx.engine.kind,
      started,
    ),
    btest: { auth: 'none', protocol: s.protocol, direction: s.direction, connections: s.connections },
  };
  try {
    if (s.bytes && s.protocol === 'udp')
      throw new ProbeError(
        'BP_ERR_CONFIG',
        'bytes applies to TCP tests; a UDP test moves its rate × duration (set local_tx_speed/remote_tx_speed and duration)',
      );
    const p = btestParams(s);
    result.server = { host: p.host, port: p.port, transport: p.protocol };
    const raw = await runBtest(p, {
      engine: ctx.engine,
      onAuth: (method) => {
        result.btest!.auth = method;
      },
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      ...(ctx.onEvent ? { onEvent: ctx.onEvent } : {}),
    });
    Object.assign(result, figures(raw, s));
    result.btest!.auth = raw.auth;
    // the control connection: TCP connect with the server's greeting, then until the login was accepted
    result.connections = [{ stream: 0, connect_ms: round3(raw.connectMs), ready_ms: round3(raw.readyMs) }];
    if (p.bytes) result.size_limit = { bytes: p.bytes, reached: raw.bytesReached === true };
  } catch (err) {
    markFailed(result, err, Boolean(ctx.signal?.aborted));
  }
  result.finished_at = new Date().toISOString();
  return result;
}

function figures(raw: BtestRaw, s: BtestSettings): Partial<RunResult> {
  const out: Partial<RunResult> = {
    cpu: { local_percent: raw.localCpu },
    flags: raw.singleFallback ? ['single_thread_fallback'] : [],
  };
  const remote = raw.serverStatus.filter((x) => x.seq > 0);
  if (remote.length)
    out.cpu!.remote_percent = Math.round(remote.reduce((a, x) => a + x.cpu, 0) / remote.length);
  const latency = btestLatency(raw, s.direction);
  if (latency) out.latency = latency;
  if (latency?.limited) out.flags!.push('latency_limited');
  const pts = (o: StreamOutcome[]) => o.map((x) => x.points);
  if (raw.rx)
    out.download = fromPoints(
      pts(raw.rx),
      raw.rx.map((x) => x.bytes),
      raw.durationNs,
      'client',
    );
  if (raw.tx)
    out.upload =
      fromStatus(raw.serverStatus) ??
      fromPoints(
        pts(raw.tx),
        raw.tx.map((x) => x.bytes),
        raw.durationNs,
        'client',
      );
  if (raw.udp) {
    const u = raw.udp;
    if (s.direction !== 'send') {
      out.download = { ...fromPoints([u.rxPoints], [u.bytes], raw.durationNs, 'client'), udp: udpFigures(u) };
    }
    if (s.direction !== 'receive') {
      out.upload =
        fromStatus(raw.serverStatus) ?? fromPoints([u.txPoints], [u.sentBytes], raw.durationNs, 'client');
    }
    // An unlimited sender (the server when we receive, we when we send) ramps: leave its ramp out, of
    // the rate and of the loss alike, so both describe the same seconds.
    let settled = true;
    if (out.download && !s.remote_tx_speed) {
      const ramp = skipRamp(out.download);
      settled &&= ramp.settled;
      const before = ramp.from > 0 ? raw.udpSeconds?.[ramp.from - 1] : undefined;
      if (before && out.download.udp)
        out.download.udp = udpFigures({
          ...u,
          packets: u.packets - before.packets,
          lost: u.lost - before.lost,
        });
    }
    if (out.upload && !s.local_tx_speed) settled = skipRamp(out.upload).settled && settled;
    if (!settled) out.flags!.push('udp_ramp');
  }
  return out;
}

/**
 * Latency sets of a btest run: TCP connect round trips before the test (idle) and during it, filed under
 * the direction the line was loaded in (receive: download, send: upload, both: both).
 */
export function btestLatency(
  raw: BtestRaw,
  direction: BtestSettings['direction'],
): LatencyResult | undefined {
  const l = raw.latency;
  if (!l) return undefined;
  const idle = latencySet('tcp_connect', l.idle.samples, l.idle.error ? { error: l.idle.error } : {});
  const loaded =
    l.loaded &&
    latencySet('tcp_connect', l.loaded.samples, {
      ...(l.loaded.error ? { error: l.loaded.error } : {}),
      ...(l.loaded.loop_delay_ms !== undefined ? { loop_delay_ms: l.loaded.loop_delay_ms } : {}),
      started_ms: l.loaded.started_ms,
    });
  const key = direction === 'receive' ? 'download' : direction === 'send' ? 'upload' : 'both';
  const why = l.loaded?.error ?? l.idle.error;
  return latencyResult(
    { ...(idle ? { idle } : {}), ...(loaded ? { [key]: loaded } : {}) },
    why && !loaded ? `TCP connects to the btest port failed: ${why}` : undefined,
  );
}

/**
 * Takes the figure from where the unlimited sender's ramp ended (src/measure/ramp.ts); the ramp's
 * seconds stay in the series and in bytes_total.
 */
function skipRamp(d: DirectionResult): Ramp {
  const widths = d.series.map((x, i) => x.t_ms - (i ? d.series[i - 1]!.t_ms : 0));
  const ramp = rampEnd(d.series.map((x) => x.mbps));
  const keep = d.series.slice(ramp.from);
  const ms = widths.slice(ramp.from).reduce((a, w) => a + w, 0);
  if (ramp.from > 0 && ms > 0) {
    const mbit = keep.reduce((a, x, i) => a + x.mbps * widths[ramp.from + i]!, 0) / 1e3;
    d.mbps = round3((mbit * 1e3) / ms);
    d.bytes = Math.round((mbit * 1e6) / 8);
    d.duration_ms = ms;
    d.ramp_ms = d.series[ramp.from - 1]!.t_ms;
  }
  return ramp;
}
