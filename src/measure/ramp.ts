/**
 * Where an unlimited UDP sender's ramp ends. btest's unlimited mode has no rate: the sender
 * starts as fast as it can and then follows 1.5 × what the peer reports once a second (specs/btest.md §9),
 * so the first second is a burst into an empty queue, and a peer that starts slow (btest-opensource
 * begins at 1 Mbit/s and grows ×1.5 a second) climbs for many seconds. The figure is taken from the
 * first second that reaches 90 % of the best later second; a ramp that ends after the second second,
 * or leaves fewer than two seconds to measure, did not settle and is said so (`udp_ramp`).
 */
export interface Ramp {
  /** index of the first per-second sample in the figure */
  from: number;
  settled: boolean;
}

export const RAMP_SHARE = 0.9;
/** a ramp ending later than this (seconds) did not find the path's rate in time */
export const RAMP_MAX_S = 2;

export function rampEnd(perSecond: readonly number[]): Ramp {
  const n = perSecond.length;
  if (n < 2) return { from: 0, settled: false };
  const best = Math.max(...perSecond.slice(1));
  let from = 1;
  while (from < n - 1 && perSecond[from]! < RAMP_SHARE * best) from++;
  return { from, settled: from <= RAMP_MAX_S && n - from >= 2 };
}
