import { describe, expect, it } from 'vitest';
import { directionResult } from '../../src/measure/direction.js';
import { bytesAt, intervalSeries, tStarSpeed } from '../../src/measure/speed.js';

const s = 1e9;

describe('t* rule (specs/rmbt.md §4.5)', () => {
  it('one thread: the last point sets t*, rate = bytes / t', () => {
    const r = tStarSpeed([
      [
        { t: 0.5 * s, b: 500 },
        { t: 1 * s, b: 1000 },
      ],
    ])!;
    expect(r.tStarNs).toBe(1e9);
    expect(r.bytes).toBe(1000);
    expect(r.bps).toBe(8000);
  });

  it('uneven end times: t* is the earliest last point, others are interpolated', () => {
    // Thread A ends at 2 s with 2000 B. Thread B has points at 1.5 s (900 B) and 2.5 s (1900 B):
    // at t* = 2 s, B holds 900 + (0.5/1.0) * 1000 = 1400 B. Total 3400 B over 2 s = 13600 bit/s.
    const r = tStarSpeed([
      [
        { t: 1 * s, b: 1000 },
        { t: 2 * s, b: 2000 },
      ],
      [
        { t: 1.5 * s, b: 900 },
        { t: 2.5 * s, b: 1900 },
      ],
    ])!;
    expect(r.tStarNs).toBe(2e9);
    expect(r.perThread).toEqual([2000, 1400]);
    expect(r.bps).toBeCloseTo(13600, 9);
  });

  it('interpolates from the implicit origin when the first point is after t*', () => {
    // A ends at 1 s; B's first point is at 4 s with 4000 B: at 1 s, 1000 B from (0, 0).
    const r = tStarSpeed([[{ t: 1 * s, b: 300 }], [{ t: 4 * s, b: 4000 }]])!;
    expect(r.perThread).toEqual([300, 1000]);
    expect(r.bps).toBeCloseTo(((1300 * 8) / 1) * 1, 9);
  });

  it('uses a point exactly at t* without interpolation', () => {
    expect(
      bytesAt(
        [
          { t: 10, b: 7 },
          { t: 20, b: 9 },
        ],
        10,
      ),
    ).toBe(7);
    expect(
      bytesAt(
        [
          { t: 10, b: 7 },
          { t: 20, b: 9 },
        ],
        30,
      ),
    ).toBe(9);
  });

  it('never lets an interpolated increment go negative', () => {
    expect(
      bytesAt(
        [
          { t: 10, b: 7 },
          { t: 20, b: 5 },
        ],
        15,
      ),
    ).toBe(7);
  });

  it('gives no result when a thread has no data', () => {
    expect(tStarSpeed([[{ t: 1, b: 1 }], []])).toBeUndefined();
    expect(tStarSpeed([])).toBeUndefined();
  });

  it('interval series sums threads per bin up to t*', () => {
    const a = [
      { t: 1 * s, b: 1_000_000 },
      { t: 2 * s, b: 3_000_000 },
    ];
    const series = intervalSeries([a, a], 2e9, 1e9);
    // bin 1: 2 × 1 MB in 1 s = 16 Mbit/s; bin 2: 2 × 2 MB = 32 Mbit/s
    expect(series).toEqual([
      { t_ms: 1000, mbps: 16 },
      { t_ms: 2000, mbps: 32 },
    ]);
  });

  it('interval series: a short tail joins the bin before it instead of drawing a spike', () => {
    // 1 Gbit/s steady for 2.002 s, then the last chunk (64 KiB) lands in the final 2 ms: read as its own
    // bin that tail is 262 Mbit/s on top of the line rate; folded in, the last bin stays near the line.
    const rate = 125e6; // bytes per second
    const pts = [
      { t: 1 * s, b: rate },
      { t: 2 * s, b: 2 * rate },
      { t: 2.002 * s, b: 2 * rate + 0.002 * rate + 65536 },
    ];
    const series = intervalSeries([pts], 2.002e9, 1e9);
    expect(series.map((p) => p.t_ms)).toEqual([1000, 2002]);
    expect(series[0]!.mbps).toBeCloseTo(1000, 3);
    expect(series[1]!.mbps).toBeLessThan(1000 * 1.3);
    // A tail of at least half a bin keeps its own bin.
    const longer = intervalSeries([[{ t: 2.6 * s, b: 2.6 * rate }]], 2.6e9, 1e9);
    expect(longer.map((p) => p.t_ms)).toEqual([1000, 2000, 2600]);
    expect(longer.every((p) => Math.abs(p.mbps - 1000) < 1e-6)).toBe(true);
  });

  it('direction result carries t* figures and per-stream numbers', () => {
    const d = directionResult(
      [
        [{ t: 2e9, b: 2_000_000 }],
        [
          { t: 1e9, b: 500_000 },
          { t: 3e9, b: 2_500_000 },
        ],
      ],
      [2_000_000, 2_600_000],
      'server',
      4096,
    )!;
    expect(d.duration_ms).toBe(2000);
    expect(d.bytes).toBe(3_500_000);
    expect(d.bytes_total).toBe(4_600_000);
    expect(d.mbps).toBe(14);
    expect(d.per_stream[1]!.bytes_at_t_star).toBe(1_500_000);
    expect(d.timing).toBe('server');
  });
});
