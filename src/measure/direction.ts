import type { DirectionResult } from './result.js';
import { intervalSeries, type Point, round3, tStarSpeed } from './speed.js';

/** Bin width of the per-interval series (charts, MQTT attributes). */
export const SERIES_BIN_NS = 250_000_000;

/** One direction's figures from per-thread series, by the t* rule. Undefined when a thread has no data. */
export function directionResult(
  threads: readonly (readonly Point[])[],
  totals: readonly number[],
  timing: 'client' | 'server',
  chunkSize?: number,
): DirectionResult | undefined {
  const speed = tStarSpeed(threads);
  if (!speed) return undefined;
  return {
    mbps: round3(speed.bps / 1e6),
    bytes: Math.round(speed.bytes),
    bytes_total: totals.reduce((a, b) => a + b, 0),
    duration_ms: round3(speed.tStarNs / 1e6),
    streams: threads.length,
    ...(chunkSize !== undefined ? { chunk_size: chunkSize } : {}),
    timing,
    series: intervalSeries(threads, speed.tStarNs, SERIES_BIN_NS),
    per_stream: threads.map((pts, i) => {
      const last = pts[pts.length - 1]!;
      return {
        stream: i,
        bytes: totals[i] ?? last.b,
        bytes_at_t_star: Math.round(speed.perThread[i]!),
        duration_ms: round3(last.t / 1e6),
        mbps: round3((last.b * 8 * 1e3) / last.t),
      };
    }),
  };
}
