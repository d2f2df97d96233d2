import { cpuMeter } from '../util/cpu.js';
import { worstLoadedMs } from './latency.js';
import type { QualityFlag, RunResult } from './result.js';

/**
 * Run-quality judgements (design.md "Results": honest flags). Pure functions over a finished result, so
 * the service, the page and tests agree on them.
 */
export interface Thresholds {
  download_mbps?: number;
  upload_mbps?: number;
  ping_ms?: number;
  loaded_latency_ms?: number;
}

function flag(r: RunResult, f: QualityFlag): void {
  if (!r.flags.includes(f)) r.flags.push(f);
}

/**
 * Compares an ok run with the target's thresholds: download or upload below, or the ping median or the
 * worse loaded-latency median above, sets `below_threshold`. A failed run misses nothing here (its state is the failure, not a slow line).
 */
export function applyThresholds(r: RunResult, t: Thresholds): void {
  if (
    t.download_mbps === undefined &&
    t.upload_mbps === undefined &&
    t.ping_ms === undefined &&
    t.loaded_latency_ms === undefined
  )
    return;
  const missed: NonNullable<RunResult['thresholds']>['missed'] = [];
  if (r.status === 'ok') {
    if (t.download_mbps !== undefined && r.download && r.download.mbps < t.download_mbps)
      missed.push('download');
    if (t.upload_mbps !== undefined && r.upload && r.upload.mbps < t.upload_mbps) missed.push('upload');
    if (t.ping_ms !== undefined && r.ping && r.ping.median_ms > t.ping_ms) missed.push('ping');
    // the worse loaded median of download and upload; no loaded latency misses nothing
    const loaded = worstLoadedMs(r.latency);
    if (t.loaded_latency_ms !== undefined && loaded !== undefined && loaded > t.loaded_latency_ms)
      missed.push('loaded_latency');
  }
  r.thresholds = { ...t, missed };
  if (missed.length) flag(r, 'below_threshold');
}

/**
 * The probe itself was the ceiling when the machine's CPU was at the limit during the run, or — on the js
 * engine, where bulk data runs on the one Node thread — when this process used the limit of one core.
 */
export function applyCpu(r: RunResult, machinePercent: number, processPercent: number, limit: number): void {
  r.cpu.machine_percent = Math.round(machinePercent);
  r.cpu.process_percent = Math.round(processPercent);
  if (r.status !== 'ok') return;
  if (machinePercent >= limit || (r.engine === 'js' && processPercent >= limit)) flag(r, 'cpu_limited');
}

/** True when the run says the line was below what the user asked for (the problem binary_sensor). */
export function isBelowThreshold(r: RunResult): boolean {
  return r.flags.includes('below_threshold');
}

/**
 * Watches this machine's and this process's CPU from now until `apply`, which flags the result as the
 * service would (`cpu_limited`, applyCpu): the CLI's summary then says what a scheduled run would.
 */
export function cpuWatch(): { apply(r: RunResult, limit: number): void } {
  const meter = cpuMeter();
  const proc0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  return {
    apply(r, limit) {
      const wallUs = Number(process.hrtime.bigint() - t0) / 1e3;
      const used = process.cpuUsage(proc0);
      applyCpu(r, meter.percent(), wallUs > 0 ? ((used.user + used.system) / wallUs) * 100 : 0, limit);
    },
  };
}
