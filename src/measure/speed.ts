/**
 * The RMBT throughput rule (specs/rmbt.md §4.5, SPEC-C §Phase 4/6).
 *
 * Each thread k has points (t, cumulative bytes) with an implicit origin (0, 0). t* is the smallest last
 * time over all threads: the latest instant for which every thread still has data. Each thread's bytes at
 * t* are read off its series (exactly, or by linear interpolation between the neighbouring points), and
 * the rate is Σ b_k / t*.
 */
export interface Point {
  /** nanoseconds since the thread's own start (GETTIME sent, or the server's OK for PUT) */
  readonly t: number;
  /** cumulative bytes at t */
  readonly b: number;
}

export interface SpeedResult {
  /** t* in ns */
  readonly tStarNs: number;
  /** Σ b_k at t* (may be fractional after interpolation; round for display) */
  readonly bytes: number;
  /** bits per second */
  readonly bps: number;
  /** per-thread bytes at t* */
  readonly perThread: readonly number[];
}

/** Bytes a series holds at time t, interpolating linearly from the origin or the previous point. */
export function bytesAt(points: readonly Point[], t: number): number {
  let prevT = 0;
  let prevB = 0;
  for (const p of points) {
    if (p.t >= t) {
      if (p.t === t) return p.b;
      const span = p.t - prevT;
      if (span <= 0) return p.b;
      // WS never lets the increment go below zero; cumulative series cannot shrink, so clamp the same way.
      return prevB + Math.max(0, ((t - prevT) / span) * (p.b - prevB));
    }
    prevT = p.t;
    prevB = p.b;
  }
  return prevB;
}

export function tStarSpeed(threads: readonly (readonly Point[])[]): SpeedResult | undefined {
  const usable = threads.filter((s) => s.length > 0);
  if (usable.length === 0 || usable.length !== threads.length) return undefined;
  const tStar = Math.min(...usable.map((s) => s[s.length - 1]!.t));
  if (!(tStar > 0)) return undefined;
  const perThread = usable.map((s) => bytesAt(s, tStar));
  const bytes = perThread.reduce((a, b) => a + b, 0);
  return { tStarNs: tStar, bytes, bps: (bytes * 8 * 1e9) / tStar, perThread };
}

/**
 * A per-interval series for charts: the summed rate of all threads in consecutive bins of `binNs`,
 * read off the same interpolated curves, up to t*. A last bin narrower than half a bin joins the one
 * before it: a 1–2 ms tail holds one chunk's worth of bytes, which read as a rate draws a spike many
 * times the line's speed at the end of every direction.
 */
export function intervalSeries(
  threads: readonly (readonly Point[])[],
  tStarNs: number,
  binNs: number,
): { t_ms: number; mbps: number }[] {
  const out: { t_ms: number; mbps: number }[] = [];
  let prev = 0;
  let start = 0;
  for (let end = binNs; end - binNs < tStarNs; end += binNs) {
    let edge = Math.min(end, tStarNs);
    // Fold a short tail into this bin (the loop then ends: edge is t*).
    if (tStarNs - edge > 0 && tStarNs - edge < binNs / 2) edge = tStarNs;
    const total = threads.reduce((a, s) => a + bytesAt(s, edge), 0);
    const width = edge - start;
    if (width <= 0) break;
    out.push({ t_ms: Math.round(edge / 1e6), mbps: round3(((total - prev) * 8 * 1e3) / width) });
    prev = total;
    start = edge;
    if (edge >= tStarNs) break;
  }
  return out;
}

/**
 * How often our servers sample each stream: fine enough for the t* rule and a per-second
 * series of a served test, coarse enough that a 300 s test on 100 connections keeps 120 000 points.
 */
export const SERVER_SAMPLE_NS = 250e6;

/**
 * A stream's points with its end as the last one: an engine samples at intervals and adds a final
 * point only when the job itself ended it, so a stream the peer closed (a server's receive, a client
 * that stops sending) would otherwise end at its last sample and t* would read far too few bytes.
 */
export function withEnd(points: readonly Point[], bytes: number, endNs: number): Point[] {
  const last = points.at(-1);
  if (bytes <= 0 || (last && last.b >= bytes)) return [...points];
  return [...points, { t: Math.max(endNs, last?.t ?? 0), b: bytes }];
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
