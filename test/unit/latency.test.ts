import { describe, expect, it } from 'vitest';
import {
  bufferbloatGrade,
  type LatencySample,
  latencyResult,
  latencySet,
  latencyStats,
  responsivenessRpm,
  worstLoadedMs,
} from '../../src/measure/latency.js';
import { pace } from '../../src/net/probe.js';

/** A phase's samples, 100 ms apart, from hand-written round trips. */
const series = (ms: number[]): LatencySample[] => ms.map((v, i) => ({ t_ms: i * 100, ms: v }));

describe('latency statistics', () => {
  it('count, median, p90, p99, min, max, mean and population stddev of a hand-made series', () => {
    const s = latencyStats([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])!;
    expect(s.count).toBe(10);
    expect(s.median_ms).toBe(55);
    // linear interpolation between ranks: p90 at rank 8.1, p99 at rank 8.91
    expect(s.p90_ms).toBe(91);
    expect(s.p99_ms).toBe(99.1);
    expect(s.min_ms).toBe(10);
    expect(s.max_ms).toBe(100);
    expect(s.mean_ms).toBe(55);
    // population variance of 10..100 step 10 = 825
    expect(s.stddev_ms).toBeCloseTo(Math.sqrt(825), 3);
    expect(latencyStats([])).toBeUndefined();
    expect(latencyStats([7])).toMatchObject({ median_ms: 7, p99_ms: 7, stddev_ms: 0 });
  });

  it('a set keeps its raw samples (rounded to µs) and the connect samples beside them', () => {
    const set = latencySet('rmbt_ping', series([1.23456, 2, 3]), {
      connect: series([4, 5]),
      probe_bytes: 240,
    })!;
    expect(set.method).toBe('rmbt_ping');
    expect(set.samples[0]).toEqual({ t_ms: 0, ms: 1.235 });
    expect(set.connect).toMatchObject({ count: 2, median_ms: 4.5 });
    expect(set.probe_bytes).toBe(240);
    expect(latencySet('tcp_connect', [])).toBeUndefined();
  });

  it('responsiveness is 60 000 / the loaded median in ms (RPM)', () => {
    expect(responsivenessRpm(20)).toBe(3000);
    expect(responsivenessRpm(250)).toBe(240);
    expect(responsivenessRpm(0)).toBeUndefined();
    expect(responsivenessRpm(Number.NaN)).toBeUndefined();
  });

  it("grades on DSLReports' bounds: A+ < 5, A < 30, B < 60, C < 200, D < 400 ms, else F", () => {
    const cases: [number, string][] = [
      [0, 'A+'],
      [4.99, 'A+'],
      [5, 'A'],
      [29.9, 'A'],
      [30, 'B'],
      [59, 'B'],
      [60, 'C'],
      [199, 'C'],
      [200, 'D'],
      [399.9, 'D'],
      [400, 'F'],
      [5000, 'F'],
    ];
    for (const [ms, g] of cases) expect(bufferbloatGrade(ms), `${ms} ms`).toBe(g);
  });

  it('a run: bufferbloat per direction against the idle median, graded on their mean, RPM over all loaded samples', () => {
    const idle = latencySet('rmbt_ping', series([10, 11, 12, 10, 11]))!; // median 11
    const download = latencySet('rmbt_ping', series([100, 110, 120, 130, 140]))!; // median 120
    const upload = latencySet('rmbt_ping', series([20, 21, 22, 23, 24]))!; // median 22
    const r = latencyResult({ idle, download, upload });
    expect(r.bufferbloat_ms).toEqual({ download: 109, upload: 11 });
    // mean increase (109 + 11) / 2 = 60 → C (B ends below 60)
    expect(r.grade).toBe('C');
    // pooled loaded median of the ten samples: (24 + 100) / 2 = 62 ms → 968 RPM
    expect(r.responsiveness_rpm).toBe(Math.round(60000 / 62));
    expect(worstLoadedMs(r)).toBe(120);
  });

  it('a shallow queue grades better than a deep one; a loaded median below the idle one counts as no increase', () => {
    const idle = latencySet('tcp_connect', series([20, 20, 20]))!;
    const shallow = latencyResult({ idle, download: latencySet('tcp_connect', series([22, 24, 23]))! });
    const deep = latencyResult({ idle, download: latencySet('tcp_connect', series([300, 320, 310]))! });
    expect(shallow.grade).toBe('A+');
    expect(deep.grade).toBe('D');
    const faster = latencyResult({ idle, upload: latencySet('tcp_connect', series([18, 19, 18]))! });
    expect(faster.bufferbloat_ms).toEqual({ upload: 0 });
    expect(faster.grade).toBe('A+');
  });

  it('a loaded set whose loop delay is ≥ 1 ms and ≥ a quarter of its median makes the figures upper bounds', () => {
    const idle = latencySet('rmbt_ping', series([0.1, 0.1, 0.1]))!;
    const busy = latencySet('rmbt_ping', series([16, 14, 18]), { loop_delay_ms: 6 })!;
    expect(latencyResult({ idle, download: busy }).limited).toBe(true);
    // a long queue with a small loop delay is a measurement
    const deep = latencySet('rmbt_ping', series([200, 210, 190]), { loop_delay_ms: 6 })!;
    expect(latencyResult({ idle, download: deep }).limited).toBeUndefined();
    // a loopback-fast line with a sub-millisecond loop delay too
    const fast = latencySet('rmbt_ping', series([0.3, 0.4, 0.3]), { loop_delay_ms: 0.2 })!;
    expect(latencyResult({ idle, upload: fast }).limited).toBeUndefined();
  });

  it('without loaded samples there is no RPM or grade, and the reason is kept', () => {
    const idle = latencySet('rmbt_ping', series([1, 2, 3]))!;
    const r = latencyResult({ idle }, 'the server refused a connection for latency probes');
    expect(r.responsiveness_rpm).toBeUndefined();
    expect(r.grade).toBeUndefined();
    expect(r.unavailable).toMatch(/refused/);
    expect(worstLoadedMs(r)).toBeUndefined();
  });
});

describe('probe pacing', () => {
  it('one probe at a time, at the interval, until stopped; the first failure ends it with its message', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let n = 0;
    const p = pace(
      async () => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        if (++n === 4) throw new Error('peer went away');
        return { ms: 5, bytes: 10 };
      },
      { intervalMs: 20, maxSamples: 100 },
    );
    await p.finished;
    const out = await p.stop();
    expect(maxInFlight).toBe(1);
    expect(out.samples).toHaveLength(3);
    expect(out.bytes).toBe(30);
    expect(out.error).toMatch(/peer went away/);
    // paced from the start of each probe: 20 ms apart, not 25
    expect(out.samples[2]!.t_ms - out.samples[1]!.t_ms).toBeGreaterThanOrEqual(19);
    expect(out.pending).toBe(false);
  });

  it('stop does not wait for a hung probe longer than its grace, and says one is pending', async () => {
    const p = pace(() => new Promise<{ ms: number }>(() => {}), { intervalMs: 10, maxSamples: 5 });
    await new Promise((r) => setTimeout(r, 20));
    const t = Date.now();
    const out = await p.stop(50);
    expect(Date.now() - t).toBeLessThan(1000);
    expect(out.pending).toBe(true);
    expect(out.samples).toHaveLength(0);
  });

  it('maxSamples bounds the loop', async () => {
    const p = pace(async () => ({ ms: 1 }), { intervalMs: 0, maxSamples: 7 });
    await p.finished;
    expect((await p.stop()).samples).toHaveLength(7);
  });
});
