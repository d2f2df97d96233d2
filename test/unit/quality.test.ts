import { describe, expect, it } from 'vitest';
import { applyCpu, applyThresholds } from '../../src/measure/quality.js';
import type { RunResult } from '../../src/measure/result.js';

const dir = (mbps: number) => ({
  mbps,
  bytes: 1,
  bytes_total: 1,
  duration_ms: 1,
  streams: 1,
  timing: 'client' as const,
  series: [],
  per_stream: [],
});
const run = (over: Partial<RunResult> = {}): RunResult => ({
  target: { id: 't', kind: 'rmbt' },
  server: { host: 'h', port: 1 },
  started_at: '',
  finished_at: '',
  status: 'ok',
  engine: 'native',
  cpu: {},
  flags: [],
  download: dir(80),
  upload: dir(20),
  ...over,
});

describe('thresholds → below_threshold', () => {
  it('download, upload below and ping above each count', () => {
    const r = run({ ping: { median_ms: 30 } as RunResult['ping'] });
    applyThresholds(r, { download_mbps: 100, upload_mbps: 10, ping_ms: 20 });
    expect(r.thresholds!.missed).toEqual(['download', 'ping']);
    expect(r.flags).toEqual(['below_threshold']);
  });
  it('met thresholds and no thresholds leave the run clean', () => {
    const r = run();
    applyThresholds(r, { download_mbps: 50, upload_mbps: 20 });
    expect(r.flags).toEqual([]);
    expect(r.thresholds!.missed).toEqual([]);
    const n = run();
    applyThresholds(n, {});
    expect(n.thresholds).toBeUndefined();
  });
  it('a failed run is not judged', () => {
    const r = run({ status: 'failed' });
    applyThresholds(r, { download_mbps: 1000 });
    expect(r.flags).toEqual([]);
  });
});

describe('cpu_limited', () => {
  it('machine CPU at the limit flags any engine', () => {
    const r = run();
    applyCpu(r, 95, 40, 90);
    expect(r.flags).toEqual(['cpu_limited']);
    expect(r.cpu).toEqual({ machine_percent: 95, process_percent: 40 });
  });
  it('one saturated core flags only the js engine (its bulk data runs on the Node thread)', () => {
    const js = run({ engine: 'js' });
    applyCpu(js, 30, 97, 90);
    expect(js.flags).toEqual(['cpu_limited']);
    const native = run();
    applyCpu(native, 30, 97, 90);
    expect(native.flags).toEqual([]);
  });
});
