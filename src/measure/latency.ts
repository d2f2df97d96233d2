import { round3 } from './speed.js';
import { mean, median, percentile, stddev } from './stats.js';

/**
 * Latency under load: round trips measured while the line is idle and while the download and
 * the upload fill it, summarised per phase, turned into responsiveness (round trips per minute) and a
 * bufferbloat grade. Pure functions; the probes that collect the samples live with each protocol
 * (src/rmbt/client.ts, src/btest/client.ts) and src/util/probe.ts.
 */

/** How a set's round trips were taken. */
export type LatencyMethod =
  /** RMBT `PING` → `PONG` on a connection of its own that carries no bulk data (specs/rmbt.md §3.2) */
  | 'rmbt_ping'
  /** a TCP connect (SYN → SYN-ACK) to the server's port, closed at once: btest has no ping */
  | 'tcp_connect'
  /** the server kernel's smoothed RTT of the loaded connection, from ndt7's TCPInfo measurements */
  | 'tcp_info_rtt';

export interface LatencySample {
  /** when the probe went out, ms after the phase started */
  t_ms: number;
  /** its round trip, ms */
  ms: number;
}

export interface LatencyStats {
  count: number;
  median_ms: number;
  p90_ms: number;
  p99_ms: number;
  min_ms: number;
  max_ms: number;
  mean_ms: number;
  /** population standard deviation */
  stddev_ms: number;
}

export interface LatencySet extends LatencyStats {
  method: LatencyMethod;
  samples: LatencySample[];
  /** RMBT: the TCP connect time of fresh connections during the phase (what a new flow waits) */
  connect?: LatencyStats & { samples: LatencySample[] };
  /** the probe stopped early (a refused or dropped probe connection); the samples before it count */
  error?: string;
  /** payload bytes the probes moved both ways in this phase (not counted in the speed) */
  probe_bytes?: number;
  /** median wait of a ready callback in this process's event loop meanwhile (src/util/probe.ts) */
  loop_delay_ms?: number;
  /** when the phase's probing started (ISO 8601); the samples' t_ms count from here */
  started_at?: string;
}

/** DSLReports' bufferbloat grades (below). */
export const GRADES = ['A+', 'A', 'B', 'C', 'D', 'F'] as const;
export type BufferbloatGrade = (typeof GRADES)[number];

/**
 * Upper bounds (ms, exclusive) of the grades, from DSLReports' "Bufferbloat Grades" FAQ
 * (https://www.dslreports.com/faq/17930): the increase of the round trip while the line is fully used,
 * averaged over download and upload — A+ below 5 ms, A below 30, B below 60, C below 200, D below 400,
 * F from 400 ms. Waveform's bufferbloat test grades on the same bounds.
 */
export const GRADE_BOUNDS_MS: readonly number[] = [5, 30, 60, 200, 400];

export interface LatencyResult {
  /** before any load: RMBT's ping phase (client side, like the loaded sets), or btest connects */
  idle?: LatencySet;
  download?: LatencySet;
  upload?: LatencySet;
  /** btest `direction: both`: the line loaded both ways at once */
  both?: LatencySet;
  /** why a loaded set is missing or cut short although the run is otherwise good (e.g. a refused connection) */
  unavailable?: string;
  /** 60 000 / the median of every loaded round trip of the run (RPM, see responsivenessRpm) */
  responsiveness_rpm?: number;
  /** loaded median − idle median, per loaded phase (never below 0) */
  bufferbloat_ms?: { download?: number; upload?: number; both?: number };
  /** DSLReports' grade of the mean of bufferbloat_ms over the loaded phases */
  grade?: BufferbloatGrade;
  /**
   * our own event loop's delay was a noticeable part of a loaded median (LOOP_LIMIT): the figures are
   * upper bounds, and the run carries the `latency_limited` flag
   */
  limited?: boolean;
}

/**
 * When the loop delay makes a loaded set an upper bound rather than a measurement: at least 1 ms and
 * at least a quarter of the set's median.
 */
export const LOOP_LIMIT = { minMs: 1, share: 0.25 } as const;

export function latencyStats(values: readonly number[]): LatencyStats | undefined {
  if (values.length === 0) return undefined;
  const m = mean(values);
  return {
    count: values.length,
    median_ms: round3(median(values)),
    p90_ms: round3(percentile(values, 90)),
    p99_ms: round3(percentile(values, 99)),
    min_ms: round3(Math.min(...values)),
    max_ms: round3(Math.max(...values)),
    mean_ms: round3(m),
    stddev_ms: round3(stddev(values)),
  };
}

export function latencySet(
  method: LatencyMethod,
  samples: readonly LatencySample[],
  extra: {
    connect?: readonly LatencySample[];
    error?: string;
    probe_bytes?: number;
    loop_delay_ms?: number;
    started_ms?: number;
  } = {},
): LatencySet | undefined {
  const stats = latencyStats(samples.map((s) => s.ms));
  if (!stats) return undefined;
  const connect = extra.connect?.length ? latencyStats(extra.connect.map((s) => s.ms)) : undefined;
  const round = (s: LatencySample) => ({ t_ms: round3(s.t_ms), ms: round3(s.ms) });
  return {
    method,
    ...stats,
    samples: samples.map(round),
    ...(connect ? { connect: { ...connect, samples: extra.connect!.map(round) } } : {}),
    ...(extra.error ? { error: extra.error } : {}),
    ...(extra.probe_bytes !== undefined ? { probe_bytes: extra.probe_bytes } : {}),
    ...(extra.loop_delay_ms !== undefined ? { loop_delay_ms: extra.loop_delay_ms } : {}),
    ...(extra.started_ms !== undefined ? { started_at: new Date(extra.started_ms).toISOString() } : {}),
  };
}

/**
 * Responsiveness in round trips per minute: 60 000 / the round trip in ms, the unit the IETF IPPM draft
 * "Responsiveness under Working Conditions" defines (draft-ietf-ippm-responsiveness-04, "Terminology";
 * the formula in "Aggregating the Measurements"; later versions up to -09 keep the unit). The draft
 * combines single-sided 95 % trimmed means of probes on fresh connections (TCP, TLS, HTTP) and on the
 * loaded ones; we take the median of the round trips on a connection of our own beside the load, which
 * is the draft's foreign HTTP probe on an already open connection (see DOCS.md, "Latency under load").
 */
export function responsivenessRpm(loadedMedianMs: number): number | undefined {
  if (!(loadedMedianMs > 0) || !Number.isFinite(loadedMedianMs)) return undefined;
  return Math.round(60_000 / loadedMedianMs);
}

export function bufferbloatGrade(increaseMs: number): BufferbloatGrade {
  const i = GRADE_BOUNDS_MS.findIndex((b) => increaseMs < b);
  return GRADES[i < 0 ? GRADES.length - 1 : i]!;
}

const LOADED = ['download', 'upload', 'both'] as const;

/**
 * The run's latency figures from its sets: responsiveness over every loaded round trip, the increase
 * per loaded phase against the idle median, and the grade of their mean (DSLReports averages the down
 * and the up increase; one loaded phase is graded alone).
 */
export function latencyResult(
  sets: Pick<LatencyResult, 'idle' | 'download' | 'upload' | 'both'>,
  unavailable?: string,
): LatencyResult {
  const out: LatencyResult = {};
  if (sets.idle) out.idle = sets.idle;
  for (const k of LOADED) if (sets[k]) out[k] = sets[k];
  const loaded = LOADED.flatMap((k) => sets[k]?.samples.map((s) => s.ms) ?? []);
  if (loaded.length) {
    const rpm = responsivenessRpm(median(loaded));
    if (rpm !== undefined) out.responsiveness_rpm = rpm;
  }
  if (unavailable) out.unavailable = unavailable;
  const limited = LOADED.some((k) => {
    const s = sets[k];
    const d = s?.loop_delay_ms;
    return s !== undefined && d !== undefined && d >= LOOP_LIMIT.minMs && d >= LOOP_LIMIT.share * s.median_ms;
  });
  if (limited) out.limited = true;
  if (sets.idle) {
    const bloat: NonNullable<LatencyResult['bufferbloat_ms']> = {};
    for (const k of LOADED) {
      const s = sets[k];
      if (s) bloat[k] = round3(Math.max(0, s.median_ms - sets.idle.median_ms));
    }
    const increases = Object.values(bloat);
    if (increases.length) {
      out.bufferbloat_ms = bloat;
      out.grade = bufferbloatGrade(mean(increases));
    }
  }
  return out;
}

/** The loaded median a run's figures and thresholds use: the worse of its loaded phases. */
export function worstLoadedMs(l: LatencyResult | undefined): number | undefined {
  const m = LOADED.map((k) => l?.[k]?.median_ms).filter((v): v is number => v !== undefined);
  return m.length ? Math.max(...m) : undefined;
}
