/** Small descriptive statistics used for ping and jitter (no I/O). */

/** Median as SPEC-C / WS define it: the middle value, or the mean of the two middle values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Percentile by linear interpolation between closest ranks (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : Number.NaN;
}

/** Jitter of a sequence of delays: the mean absolute difference of consecutive values (RFC 3550 §6.4.1 without its 1/16 smoothing). */
/** Population standard deviation (what wyndrvr and ping print as mdev/stddev). */
export function stddev(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const m = mean(values);
  return Math.sqrt(values.reduce((a, v) => a + (v - m) ** 2, 0) / values.length);
}

export function jitter(values: readonly number[]): number {
  if (values.length < 2) return 0;
  let sum = 0;
  for (let i = 1; i < values.length; i++) sum += Math.abs(values[i]! - values[i - 1]!);
  return sum / (values.length - 1);
}

/** Histogram bucket upper bounds in ms; the last bucket is open-ended. */
export const PING_BUCKETS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] as const;

export function histogram(valuesMs: readonly number[], bounds: readonly number[] = PING_BUCKETS_MS) {
  const counts = new Array<number>(bounds.length + 1).fill(0);
  for (const v of valuesMs) {
    let i = bounds.findIndex((b) => v <= b);
    if (i < 0) i = bounds.length;
    counts[i]!++;
  }
  return counts.map((count, i) => ({ le_ms: i < bounds.length ? bounds[i]! : null, count }));
}
