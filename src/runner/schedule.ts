import { Cron } from 'croner';
import type { TargetSettings } from '../config/targets.js';
import { ProbeError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * When each target runs next: a cron expression (croner) or a fixed interval, plus a random start offset
 * (`jitter`) so a fleet of probes does not reach a server in the same second. Intervals are anchored on
 * the previous planned time, not on when a run ended, so they do not drift; times missed while the
 * machine slept or a long run held the queue are skipped, not made up in a burst.
 */
/** The time zone cron schedules are read in; undefined is the process's own (the TZ variable). */
let zone: string | undefined;

/**
 * Sets the time zone of every cron schedule (`service.timezone`). Throws BP_ERR_CONFIG for a name the
 * runtime's time-zone data does not know. Returns the zone in effect, for the log and the page.
 */
export function setScheduleTimezone(tz: string | undefined): string {
  if (tz) {
    try {
      new Intl.DateTimeFormat('en', { timeZone: tz });
    } catch {
      throw new ProbeError(
        'BP_ERR_CONFIG',
        `service.timezone: unknown time zone "${tz}" (use an IANA name such as Europe/Vienna)`,
      );
    }
  }
  zone = tz || undefined;
  return scheduleTimezone();
}

/** The zone cron schedules are read in (an IANA name, or what the process uses). */
export function scheduleTimezone(): string {
  return zone ?? Intl.DateTimeFormat().resolvedOptions().timeZone ?? 'UTC';
}

type Timing = Pick<TargetSettings, 'schedule' | 'interval' | 'random'>;

/**
 * A random gap (ms): exponential with the mean, clamped to [min, max], as the ndt7 spec asks of
 * unattended clients ("Requirements for non-interactive clients": mean 6 h, 36 min to 15 h).
 */
export function randomGapMs(r: NonNullable<TargetSettings['random']>, random = Math.random): number {
  const x = -Math.log(1 - random()) * r.meanMin;
  return Math.min(r.maxMin, Math.max(r.minMin, x)) * 60_000;
}

export function nextPlanned(t: Timing, after: number, random?: () => number): number {
  if (t.random) return after + randomGapMs(t.random, random);
  if (t.schedule) {
    const next = new Cron(t.schedule, { paused: true, ...(zone ? { timezone: zone } : {}) }).nextRun(
      new Date(after),
    );
    // A valid expression with no future time (e.g. a date long gone) never runs again.
    return next ? next.getTime() : Number.POSITIVE_INFINITY;
  }
  return after + t.interval * 60_000;
}

/** Minutes between two planned runs from now on (what an automated run tells a control server, F8). */
export function spacingMin(t: Timing, now = Date.now()): number {
  if (t.random) return t.random.meanMin;
  if (!t.schedule) return t.interval;
  const a = nextPlanned(t, now);
  const b = Number.isFinite(a) ? nextPlanned(t, a) : a;
  return Number.isFinite(b) ? (b - a) / 60_000 : t.interval;
}

/** The next planned time strictly after `now`, stepping from the previous one (intervals keep their phase). */
export function advance(t: Timing, prev: number, now: number, random?: () => number): number {
  // a random schedule draws its next gap from the run just fired: never two runs closer than its minimum
  if (t.random) return nextPlanned(t, Math.max(prev, now), random);
  if (t.schedule) return nextPlanned(t, Math.max(prev, now));
  const step = t.interval * 60_000;
  if (prev + step > now) return prev + step;
  return prev + step * (Math.floor((now - prev) / step) + 1);
}

/** Longest single timer: setTimeout overflows past 2^31 − 1 ms (24.8 days); longer waits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface PlanEntry {
  target: string;
  /** planned time without jitter */
  planned: number;
  /** when it actually fires: planned + a random offset up to the target's jitter */
  due: number;
}

export class Scheduler {
  private readonly plan = new Map<string, PlanEntry>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly targets: readonly TargetSettings[],
    private readonly fire: (targetId: string) => void,
    private readonly opts: { now?: () => number; random?: () => number; log?: Logger } = {},
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  start(): void {
    const now = this.now();
    for (const t of this.targets) {
      if (!t.enabled) continue;
      this.arm(t, nextPlanned(t, now, this.opts.random));
    }
  }

  stop(): void {
    this.stopped = true;
    for (const h of this.timers.values()) clearTimeout(h);
    this.timers.clear();
  }

  /** What is planned, for the page and the discovery's expire_after. */
  entries(): PlanEntry[] {
    return [...this.plan.values()];
  }

  next(targetId: string): PlanEntry | undefined {
    return this.plan.get(targetId);
  }

  private arm(t: TargetSettings, planned: number): void {
    if (this.stopped || !Number.isFinite(planned)) {
      this.plan.delete(t.id);
      return;
    }
    const offset = Math.floor((this.opts.random?.() ?? Math.random()) * t.jitter * 1000);
    const entry = { target: t.id, planned, due: planned + offset };
    this.plan.set(t.id, entry);
    this.wait(t, entry);
  }

  private wait(t: TargetSettings, entry: PlanEntry): void {
    const ms = entry.due - this.now();
    const h = setTimeout(
      () => {
        if (this.stopped) return;
        if (entry.due > this.now()) {
          this.wait(t, entry); // a long wait re-armed in steps
          return;
        }
        this.opts.log?.debug({ target: t.id }, 'scheduled run due');
        this.fire(t.id);
        this.arm(t, advance(t, entry.planned, this.now(), this.opts.random));
      },
      Math.max(0, Math.min(ms, MAX_TIMER_MS)),
    );
    this.timers.set(t.id, h);
  }
}
