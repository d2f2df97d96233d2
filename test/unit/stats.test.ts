import { describe, expect, it } from 'vitest';
import { pingStats } from '../../src/measure/result.js';
import { histogram, jitter, median, percentile } from '../../src/measure/stats.js';

describe('stats', () => {
  it('median: middle value, or mean of the two middle values (SPEC-C / WS)', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(Number.isNaN(median([]))).toBe(true);
  });

  it('percentile interpolates between ranks', () => {
    expect(percentile([1, 2, 3, 4, 5], 50)).toBe(3);
    expect(percentile([1, 2, 3, 4, 5], 95)).toBeCloseTo(4.8, 9);
    expect(percentile([10], 99)).toBe(10);
  });

  it('jitter is the mean absolute difference of consecutive values', () => {
    expect(jitter([10, 12, 11, 15])).toBeCloseTo((2 + 1 + 4) / 3, 9);
    expect(jitter([5])).toBe(0);
  });

  it('histogram buckets are upper-inclusive with an open last bucket', () => {
    const h = histogram([0.4, 0.5, 0.6, 2000], [0.5, 1]);
    expect(h).toEqual([
      { le_ms: 0.5, count: 2 },
      { le_ms: 1, count: 1 },
      { le_ms: null, count: 1 },
    ]);
  });

  it('ping stats report the server median and keep the client view apart', () => {
    const p = pingStats([
      { clientNs: 3e6, serverNs: 2e6, timeNs: 0 },
      { clientNs: 5e6, serverNs: 4e6, timeNs: 1 },
      { clientNs: 4e6, serverNs: 1e6, timeNs: 2 },
    ])!;
    expect(p.median_ms).toBe(2);
    expect(p.client_median_ms).toBe(4);
    expect(p.min_ms).toBe(1);
    expect(p.max_ms).toBe(4);
    expect(p.count).toBe(3);
    expect(p.jitter_ms).toBe(2.5);
    // population standard deviation of 2, 4, 1 (mean 7/3): sqrt(14/9) = 1.247
    expect(p.mean_ms).toBe(2.333);
    expect(p.stddev_ms).toBe(1.247);
  });
});
