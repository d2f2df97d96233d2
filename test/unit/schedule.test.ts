import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadSettings } from '../../src/config/load.js';
import type { TargetSettings } from '../../src/config/targets.js';
import {
  advance,
  nextPlanned,
  randomGapMs,
  Scheduler,
  setScheduleTimezone,
} from '../../src/runner/schedule.js';

const T0 = Date.parse('2026-11-21T10:07:30.000Z');
const target = (over: Partial<TargetSettings>): TargetSettings => ({
  id: 't',
  name: 't',
  type: 'rmbt',
  enabled: true,
  interval: 60,
  jitter: 0,
  ip_version: 'any',
  ...over,
});

describe('schedule arithmetic', () => {
  it('intervals step from the previous planned time (no drift) and skip missed slots', () => {
    const t = target({ interval: 15 });
    expect(nextPlanned(t, T0)).toBe(T0 + 15 * 60_000);
    expect(advance(t, T0, T0 + 60_000)).toBe(T0 + 15 * 60_000);
    // a run that held the queue for 40 minutes: the next slot is the next one in phase, not three at once
    expect(advance(t, T0, T0 + 40 * 60_000)).toBe(T0 + 45 * 60_000);
  });

  it('cron expressions use croner', () => {
    const t = target({ schedule: '0 */2 * * *' });
    expect(new Date(nextPlanned(t, T0)).toISOString()).toBe('2026-11-21T12:00:00.000Z');
    expect(
      new Date(
        advance(t, Date.parse('2026-11-21T12:00:00Z'), Date.parse('2026-11-21T12:00:05Z')),
      ).toISOString(),
    ).toBe('2026-11-21T14:00:00.000Z');
  });

  it('cron schedules are read in service.timezone', () => {
    const t = target({ schedule: '0 7 * * *' });
    try {
      // 07:00 in Vienna on 22 Nov 2026 is 06:00 UTC (CET, UTC+1); in New York 12:00 UTC (EST, UTC−5)
      expect(setScheduleTimezone('Europe/Vienna')).toBe('Europe/Vienna');
      expect(new Date(nextPlanned(t, T0)).toISOString()).toBe('2026-11-22T06:00:00.000Z');
      setScheduleTimezone('America/New_York');
      expect(new Date(nextPlanned(t, T0)).toISOString()).toBe('2026-11-21T12:00:00.000Z');
      expect(() => setScheduleTimezone('Mars/Olympus')).toThrow(/BP_ERR_CONFIG|unknown time zone/);
    } finally {
      setScheduleTimezone(undefined);
    }
    // without one, the process's zone (TZ; vitest runs in whatever the machine has)
    const local = new Date(nextPlanned(t, T0));
    expect(local.getHours()).toBe(7);
  });
});

describe('Scheduler', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires each enabled target at its planned time plus its random offset, then re-arms', () => {
    vi.useFakeTimers({ now: T0 });
    const fired: [string, number][] = [];
    const s = new Scheduler(
      [
        target({ id: 'a', interval: 10, jitter: 60 }),
        target({ id: 'off', enabled: false }),
        target({ id: 'b', interval: 30 }),
      ],
      (id) => fired.push([id, Date.now() - T0]),
      { random: () => 0.5 },
    );
    s.start();
    expect(s.entries().map((e) => e.target)).toEqual(['a', 'b']);
    expect(s.next('a')!.due - T0).toBe(10 * 60_000 + 30_000);
    vi.advanceTimersByTime(31 * 60_000);
    expect(fired).toEqual([
      ['a', 10 * 60_000 + 30_000],
      ['a', 20 * 60_000 + 30_000],
      ['b', 30 * 60_000],
      ['a', 30 * 60_000 + 30_000],
    ]);
    s.stop();
    vi.advanceTimersByTime(60 * 60_000);
    expect(fired).toHaveLength(4);
  });

  it('waits longer than setTimeout can (re-arms in steps)', () => {
    vi.useFakeTimers({ now: T0 });
    const fired: number[] = [];
    const s = new Scheduler([target({ interval: 10080 * 4 })], () => fired.push(Date.now() - T0), {
      random: () => 0,
    });
    // 28 days > 2^31 ms
    const t = target({ interval: 10080 * 4 });
    expect(nextPlanned(t, T0) - T0).toBeGreaterThan(2 ** 31);
    s.start();
    vi.advanceTimersByTime(2 ** 31);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(28 * 86_400_000 - 2 ** 31);
    expect(fired).toEqual([28 * 86_400_000]);
    s.stop();
  });
});

describe("a random schedule (M-Lab's rule for unattended ndt7 clients)", () => {
  const r = { meanMin: 360, minMin: 36, maxMin: 900 };
  it('gaps are exponential with the mean, clamped to 36 min – 15 h', () => {
    let seed = 1;
    // a fixed pseudo-random sequence: the test is the same every time
    const rnd = () => {
      seed = (seed * 16807) % 2147483647;
      return (seed - 1) / 2147483646;
    };
    const gaps = Array.from({ length: 4000 }, () => randomGapMs(r, rnd) / 60_000);
    expect(Math.min(...gaps)).toBe(36);
    expect(Math.max(...gaps)).toBe(900);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    // the clamps pull the mean of Exp(360) a little: about 354 min
    expect(mean).toBeGreaterThan(330);
    expect(mean).toBeLessThan(380);
    expect(randomGapMs(r, () => 0)).toBe(36 * 60_000);
    expect(randomGapMs(r, () => 0.999999)).toBe(900 * 60_000);
  });

  it('an ndt7 target on M-Lab without interval or schedule gets it; one with an interval or an own server does not', () => {
    const targets = (t: Record<string, unknown>) =>
      loadSettings({ env: { BANDWIDTH_PROBE_TARGETS: JSON.stringify([{ id: 'm', type: 'ndt7', ...t }]) } })
        .targets;
    expect(targets({ accept_data_policy: true })[0]!.random).toEqual(r);
    expect(targets({ accept_data_policy: true, interval: 120 })[0]!.random).toBeUndefined();
    expect(targets({ server: '10.0.0.2:8090' })[0]!.random).toBeUndefined();
    const t = targets({ accept_data_policy: true })[0]!;
    const now = Date.parse('2026-12-07T12:00:00Z');
    const next = nextPlanned(t, now, () => 0.5);
    expect((next - now) / 60_000).toBeCloseTo(-Math.log(0.5) * 360, 5);
    expect(advance(t, next, next, () => 0) - next).toBe(36 * 60_000);
  });
});
