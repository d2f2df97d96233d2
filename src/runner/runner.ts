import type { GeneralSettings, ServiceSettings } from '../config/schema.js';
import { clientSettings, type TargetSettings } from '../config/targets.js';
import type { Engine } from '../engine/types.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { applyThresholds, cpuWatch } from '../measure/quality.js';
import { markFailed, type RunResult, startResult } from '../measure/result.js';
import { protocolOf } from '../protocols/registry.js';
import type { Store } from '../store/store.js';
import { type BusyOptions, type BusyVerdict, checkBusy } from './busy.js';
import { spacingMin } from './schedule.js';

/**
 * The runner: one measurement at a time across all targets (design.md "One measurement at a time"), a
 * queue without duplicates, the busy-line check, a per-run timeout, abort on shutdown, quality flags,
 * and the store. It knows nothing of MQTT or HTTP: those listen to its events.
 */
/** Who started a run: `manual` (page, API, CLI) and `mqtt` (HA's button) are a person asking. */
export type Trigger = 'schedule' | 'manual' | 'start' | 'mqtt';
const byPerson = (t: Trigger | undefined) => t === 'manual' || t === 'mqtt';

export type RunnerEvent =
  | { type: 'queued'; target: string; trigger: Trigger }
  | { type: 'postponed'; target: string; attempt: number; reasons: string[]; retry_at: string }
  | { type: 'started'; target: string; trigger: Trigger; started_at: string }
  | { type: 'phase'; target: string; phase: string }
  | { type: 'progress'; target: string; direction: 'download' | 'upload'; mbps: number }
  | { type: 'finished'; target: string; run_id?: number; stored: boolean; result: RunResult }
  /** a peer's test against one of our servers was recorded; not a run of the queue */
  | { type: 'inbound'; target: string; run_id?: number; stored: boolean; result: RunResult };

/** The last failed write to the history (disk full, read-only); cleared by the next stored run. */
export interface StoreError {
  code: string;
  message: string;
  at: string;
  /** runs finished but not kept since the first failure */
  lost_runs: number;
}

export interface MeasureCtx {
  engine: Engine;
  general: GeneralSettings;
  /** what started the run: a schedule or the service's start are automated runs, manual ones are not */
  trigger?: Trigger;
  log?: Logger;
  signal: AbortSignal;
  onPhase: (phase: string) => void;
  onProgress: (direction: 'download' | 'upload', mbps: number) => void;
}

export type MeasureFn = (t: TargetSettings, ctx: MeasureCtx) => Promise<RunResult>;

/** A target's protocol, from the registry (the type was checked when the settings were read). */
const protocolFor = (t: TargetSettings) => protocolOf(t.type)!;

/** One run of a target: its protocol's measure() with the target's settings. */
export const measureTarget: MeasureFn = (t, ctx) =>
  protocolFor(t).measure(clientSettings(t), {
    engine: ctx.engine,
    general: ctx.general,
    signal: ctx.signal,
    targetId: t.id,
    ...(ctx.log ? { log: ctx.log } : {}),
    ...(ctx.trigger && !byPerson(ctx.trigger) ? { automated: { everyMin: spacingMin(t) } } : {}),
    onPhase: ctx.onPhase,
    onProgress: ctx.onProgress,
  });

/** Where the idle latency probe connects: the server the run will talk to first. */
export function probePeer(t: TargetSettings): { host: string; port: number } | undefined {
  try {
    return protocolFor(t).peer(clientSettings(t));
  } catch {
    // a malformed URL was refused by the settings already; no probe then
    return undefined;
  }
}

interface Job {
  target: TargetSettings;
  trigger: Trigger;
  postponed: number;
}

export interface RunnerDeps {
  targets: readonly TargetSettings[];
  general: GeneralSettings;
  service: ServiceSettings;
  engine: Engine;
  store?: Store;
  log?: Logger;
  measure?: MeasureFn;
  /** busy-check window (ms); tests shorten it */
  busyWindowMs?: number;
}

export class Runner {
  private readonly queue: Job[] = [];
  private readonly waiting = new Map<string, NodeJS.Timeout>();
  private readonly listeners = new Set<(e: RunnerEvent) => void>();
  private current: { job: Job; ctrl: AbortController; phase: string; started: string } | undefined;
  private pumping: Promise<void> | undefined;
  private stopped = false;
  private readonly byId: Map<string, TargetSettings>;

  constructor(private readonly d: RunnerDeps) {
    this.byId = new Map(d.targets.map((t) => [t.id, t]));
  }

  on(listener: (e: RunnerEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: RunnerEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.d.log?.error({ err: String(err), event: e.type }, 'runner listener failed');
      }
    }
  }

  get targets(): readonly TargetSettings[] {
    return this.d.targets;
  }

  /** What runs now and what waits, for the page and the running sensors. */
  /** set while runs cannot be written to the history */
  storeError: StoreError | undefined;

  status(): {
    running?: { target: string; phase: string; started_at: string };
    queued: string[];
    store_error?: StoreError;
  } {
    // a failed write (disk full) first; else a damaged history the store found
    const storeError = this.storeError ?? this.d.store?.health();
    return {
      ...(storeError ? { store_error: storeError } : {}),
      ...(this.current
        ? {
            running: {
              target: this.current.job.target.id,
              phase: this.current.phase,
              started_at: this.current.started,
            },
          }
        : {}),
      queued: this.queue.map((j) => j.target.id),
    };
  }

  /**
   * Queues a run of one target ('all': every enabled target; a manual run of all includes disabled ones
   * only when named). Returns the ids that were queued; a target already queued or running is not queued
   * twice.
   */
  enqueue(target: string, trigger: Trigger): string[] {
    if (this.stopped) return [];
    const list =
      target === 'all'
        ? this.d.targets.filter((t) => t.enabled || byPerson(trigger))
        : [this.byId.get(target)].filter((t): t is TargetSettings => Boolean(t));
    if (!list.length && target !== 'all')
      throw new ProbeError(
        'BP_ERR_USAGE',
        `unknown target "${target}"; targets: ${[...this.byId.keys()].join(', ')}`,
      );
    const queued: string[] = [];
    for (const t of list) {
      if (this.current?.job.target.id === t.id || this.queue.some((j) => j.target.id === t.id)) continue;
      // Run-now cuts a postponed wait short.
      const w = this.waiting.get(t.id);
      if (w) {
        clearTimeout(w);
        this.waiting.delete(t.id);
      }
      this.queue.push({ target: t, trigger, postponed: 0 });
      queued.push(t.id);
      this.emit({ type: 'queued', target: t.id, trigger });
    }
    this.kick();
    return queued;
  }

  private kick(): void {
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
      if (this.queue.length && !this.stopped) this.kick();
    });
  }

  private async pump(): Promise<void> {
    for (let job = this.queue.shift(); job && !this.stopped; job = this.queue.shift()) {
      await this.runOne(job);
    }
  }

  /** The lowest idle RTT of the target's recent runs that were not busy (the queueing-delay baseline). */
  private baseline(targetId: string): number | undefined {
    const recent = this.d.store?.list({ target: targetId, limit: 20 }) ?? [];
    const rtts = recent
      .map((r) => r.result.pre)
      .filter((p) => p && !p.busy && p.idle_rtt_ms !== undefined)
      .map((p) => p!.idle_rtt_ms!);
    return rtts.length ? Math.min(...rtts) : undefined;
  }

  private async runOne(job: Job): Promise<void> {
    const { target: t } = job;
    const s = this.d.service;
    const log = this.d.log?.child({ target: t.id, trigger: job.trigger });
    const ctrl = new AbortController();
    this.current = { job, ctrl, phase: 'check', started: new Date().toISOString() };
    let verdict: BusyVerdict | undefined;
    if (s.busy_check !== 'off') {
      const baseline = this.d.store ? this.safe(() => this.baseline(t.id)) : undefined;
      const peer = probePeer(t);
      const o: BusyOptions = {
        windowMs: this.d.busyWindowMs ?? 1000,
        trafficMbps: s.busy_traffic,
        rttMs: s.busy_rtt,
        ...(s.busy_interface ? { interface: s.busy_interface } : {}),
        ...(peer ? { peer } : {}),
        ...(baseline !== undefined ? { baselineRttMs: baseline } : {}),
      };
      verdict = await checkBusy(o);
      // A manual run is what the user asked for now: it is flagged, never postponed.
      if (
        verdict.busy &&
        s.busy_check === 'postpone' &&
        !byPerson(job.trigger) &&
        job.postponed < s.busy_retries &&
        !this.stopped
      ) {
        const retryAt = new Date(Date.now() + s.busy_retry_delay * 1000);
        log?.info({ reasons: verdict.reasons, attempt: job.postponed + 1 }, 'line busy, run postponed');
        this.emit({
          type: 'postponed',
          target: t.id,
          attempt: job.postponed + 1,
          reasons: verdict.reasons,
          retry_at: retryAt.toISOString(),
        });
        this.waiting.set(
          t.id,
          setTimeout(() => {
            this.waiting.delete(t.id);
            if (this.stopped) return;
            this.queue.push({ ...job, postponed: job.postponed + 1 });
            this.kick();
          }, s.busy_retry_delay * 1000),
        );
        this.current = undefined;
        return;
      }
    }
    const started = new Date();
    this.current = { job, ctrl, phase: 'connect', started: started.toISOString() };
    this.emit({ type: 'started', target: t.id, trigger: job.trigger, started_at: started.toISOString() });
    log?.info('run started');
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctrl.abort();
    }, s.run_timeout * 1000);
    const cpu = cpuWatch();
    let result: RunResult;
    try {
      result = await (this.d.measure ?? measureTarget)(t, {
        engine: this.d.engine,
        general: this.d.general,
        trigger: job.trigger,
        ...(log ? { log } : {}),
        signal: ctrl.signal,
        onPhase: (phase) => {
          if (this.current) this.current.phase = phase;
          this.emit({ type: 'phase', target: t.id, phase });
        },
        onProgress: (direction, mbps) => this.emit({ type: 'progress', target: t.id, direction, mbps }),
      });
    } catch (err) {
      // measure functions return failures as results; anything thrown is a bug, still a stored failure
      result = startResult({ id: t.id, kind: t.type }, { host: '', port: 0 }, this.d.engine.kind, started);
      markFailed(result, err, ctrl.signal.aborted && !timedOut);
    } finally {
      clearTimeout(timer);
    }
    if (timedOut) {
      result.status = 'failed';
      result.error = new ProbeError(
        'BP_ERR_RUN_TIMEOUT',
        `stopped after ${s.run_timeout} s (service.run_timeout)`,
      ).toJSON();
    }
    cpu.apply(result, s.cpu_limit);
    result.trigger = job.trigger;
    if (verdict) {
      const { busy, reasons, interface: dev, traffic_mbps, idle_rtt_ms, baseline_rtt_ms } = verdict;
      result.pre = {
        busy,
        reasons,
        postponed: job.postponed,
        ...(dev ? { interface: dev } : {}),
        ...(traffic_mbps !== undefined ? { traffic_mbps } : {}),
        ...(idle_rtt_ms !== undefined ? { idle_rtt_ms } : {}),
        ...(baseline_rtt_ms !== undefined ? { baseline_rtt_ms } : {}),
      };
      if (busy && !result.flags.includes('link_busy')) result.flags.push('link_busy');
    }
    applyThresholds(result, {
      ...(t.threshold_download !== undefined ? { download_mbps: t.threshold_download } : {}),
      ...(t.threshold_upload !== undefined ? { upload_mbps: t.threshold_upload } : {}),
      ...(t.threshold_ping !== undefined ? { ping_ms: t.threshold_ping } : {}),
      ...(t.threshold_loaded_latency !== undefined ? { loaded_latency_ms: t.threshold_loaded_latency } : {}),
    });
    const runId = this.keep(result, log);
    log?.info(
      {
        status: result.status,
        code: result.error?.code,
        download_mbps: result.download?.mbps,
        upload_mbps: result.upload?.mbps,
        ping_ms: result.ping?.median_ms,
        flags: result.flags,
        run_id: runId,
      },
      'run finished',
    );
    this.current = undefined;
    this.emit({
      type: 'finished',
      target: t.id,
      ...(runId !== undefined ? { run_id: runId } : {}),
      stored: runId !== undefined,
      result,
    });
  }

  /** Stores a finished run; a full or read-only disk is noted (page, API) and the run still reported. */
  private keep(result: RunResult, log: Logger | undefined): number | undefined {
    try {
      const runId = this.d.store?.insert(result);
      if (this.storeError) {
        log?.info({ lost_runs: this.storeError.lost_runs }, 'history writable again');
        this.storeError = undefined;
      }
      return runId;
    } catch (err) {
      // The disk is full or read-only: the run is reported (event, page, MQTT) but not kept; earlier runs
      // stay intact (SQLite rolls the insert back) and the next run tries again.
      const e = toProbeError(err, 'BP_ERR_STORE');
      this.storeError = {
        code: e.code,
        message: e.message,
        at: new Date().toISOString(),
        lost_runs: (this.storeError?.lost_runs ?? 0) + 1,
      };
      log?.error({ code: e.code, err: e.message }, 'run not stored');
      return undefined;
    }
  }

  /**
   * A test a peer ran against one of our servers: stored and reported like a run of ours
   * (page, MQTT, metrics), under the pseudo-target `inbound`; it never touches the queue.
   */
  recordInbound(result: RunResult): number | undefined {
    const log = this.d.log?.child({ target: result.target.id });
    const runId = this.keep(result, log);
    log?.info(
      {
        kind: result.target.kind,
        peer: result.inbound?.peer,
        status: result.status,
        code: result.error?.code,
        download_mbps: result.download?.mbps,
        upload_mbps: result.upload?.mbps,
        run_id: runId,
      },
      'inbound test recorded',
    );
    this.emit({
      type: 'inbound',
      target: result.target.id,
      ...(runId !== undefined ? { run_id: runId } : {}),
      stored: runId !== undefined,
      result,
    });
    return runId;
  }

  private safe<T>(f: () => T): T | undefined {
    try {
      return f();
    } catch {
      return undefined;
    }
  }

  /** Stops taking work, aborts the current run and waits until it is stored (as aborted). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    for (const w of this.waiting.values()) clearTimeout(w);
    this.waiting.clear();
    this.current?.ctrl.abort();
    await this.pumping;
  }
}
