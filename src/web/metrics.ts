import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { TargetSettings } from '../config/targets.js';
import { INBOUND_TARGET } from '../measure/inbound.js';
import { type BufferbloatGrade, GRADES } from '../measure/latency.js';
import { RUN_STATUSES } from '../measure/result.js';
import { protocolOf } from '../protocols/registry.js';
import type { Inbound } from '../runner/inbound.js';
import type { Runner } from '../runner/runner.js';
import type { Store } from '../store/store.js';

/**
 * Prometheus metrics (prom-client, its own registry): the latest figures per target and run counts read
 * from the store when scraped, and run durations observed as runs finish.
 */
export function createMetrics(
  store: Store,
  runner: Runner,
  targets: readonly TargetSettings[],
  inbound?: Inbound,
): Registry {
  const registry = new Registry();
  // The inbound tests are one more target for the per-target figures: the peer's view.
  const ids = [...targets.map((t) => t.id), ...(inbound ? [INBOUND_TARGET] : [])];
  type Summary = ReturnType<Store['summaries']>[number];
  /** A gauge per target, read from the target's latest run when scraped (no value: no sample). */
  const perTarget = (name: string, help: string, value: (last: Summary) => number | null | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ['target'],
      registers: [registry],
      collect() {
        this.reset();
        for (const id of ids) {
          const last = store.summaries({ target: id, limit: 1 })[0];
          const v = last ? value(last) : undefined;
          if (v !== null && v !== undefined) this.set({ target: id }, v);
        }
      },
    });
  /** A figure of the latest run, when that run was ok. */
  const latest = (name: string, help: string, pick: (s: Summary) => number | null) =>
    perTarget(name, help, (last) => (last.status === 'ok' ? pick(last) : null));
  // Base units, as Prometheus names want them (bits per second, seconds, a 0–1 ratio); MQTT and the
  // API keep Mbit/s and ms.
  const mbps = (v: number | null) => (v === null ? null : v * 1e6);
  const ms = (v: number | null) => (v === null ? null : v / 1000);
  latest('bandwidth_probe_download_bits_per_second', 'Download of the latest ok run', (s) =>
    mbps(s.download_mbps),
  );
  latest('bandwidth_probe_upload_bits_per_second', 'Upload of the latest ok run', (s) => mbps(s.upload_mbps));
  latest('bandwidth_probe_ping_seconds', 'Ping median of the latest ok run', (s) => ms(s.ping_ms));
  latest('bandwidth_probe_jitter_seconds', 'Jitter of the latest ok run', (s) => ms(s.jitter_ms));
  latest('bandwidth_probe_udp_loss_ratio', 'UDP loss of the latest ok run (0–1)', (s) =>
    s.loss_percent === null ? null : s.loss_percent / 100,
  );
  latest(
    'bandwidth_probe_download_latency_seconds',
    'Median round trip while the download ran, latest ok run',
    (s) => ms(s.download_latency_ms),
  );
  latest(
    'bandwidth_probe_upload_latency_seconds',
    'Median round trip while the upload ran, latest ok run',
    (s) => ms(s.upload_latency_ms),
  );
  latest(
    'bandwidth_probe_responsiveness_rpm',
    'Round trips per minute under load (60 / the loaded median in seconds), latest ok run',
    (s) => s.responsiveness_rpm,
  );
  latest(
    'bandwidth_probe_bufferbloat_grade',
    "Bufferbloat grade of the latest ok run as a number: 0 A+, 1 A, 2 B, 3 C, 4 D, 5 F (DSLReports' bounds)",
    (s) => {
      const i = GRADES.indexOf(s.bufferbloat_grade as BufferbloatGrade);
      return i < 0 ? null : i;
    },
  );
  latest('bandwidth_probe_below_threshold', '1 when the latest ok run missed a threshold', (s) =>
    s.flags.includes('below_threshold') ? 1 : 0,
  );
  // No status label here: a label that changes with every run would start a new series each time.
  perTarget(
    'bandwidth_probe_last_run_timestamp_seconds',
    'When the latest run of a target finished (any status)',
    (last) => Date.parse(last.finished_at) / 1000,
  );
  perTarget(
    'bandwidth_probe_last_run_ok',
    '1 when the latest run of a target succeeded, 0 when it failed or was aborted',
    (last) => (last.status === 'ok' ? 1 : 0),
  );
  // The history shrinks with retention, so its size is a gauge; runs since start are a counter.
  new Gauge({
    name: 'bandwidth_probe_history_runs',
    help: 'Runs kept in the history by target and status',
    labelNames: ['target', 'status'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of store.countsByTarget()) this.set({ target: c.target, status: c.status }, c.n);
    },
  });
  const finished = new Counter({
    name: 'bandwidth_probe_runs_total',
    help: 'Runs finished since the service started, by target and status',
    labelNames: ['target', 'status'],
    registers: [registry],
  });
  for (const id of ids) for (const st of RUN_STATUSES) finished.inc({ target: id, status: st }, 0);
  new Gauge({
    name: 'bandwidth_probe_running',
    help: '1 while a run of the target is in progress',
    labelNames: ['target'],
    registers: [registry],
    collect() {
      const running = runner.status().running?.target;
      for (const t of targets) this.set({ target: t.id }, t.id === running ? 1 : 0);
    },
  });
  const duration = new Histogram({
    name: 'bandwidth_probe_run_duration_seconds',
    help: 'Wall time of runs since the service started',
    labelNames: ['target', 'status'],
    buckets: [5, 10, 20, 30, 45, 60, 90, 120, 300],
    registers: [registry],
  });
  if (inbound) servedMetrics(registry, inbound, runner);
  runner.on((e) => {
    if (e.type === 'inbound') finished.inc({ target: e.target, status: e.result.status });
    if (e.type !== 'finished') return;
    finished.inc({ target: e.target, status: e.result.status });
    const s = (Date.parse(e.result.finished_at) - Date.parse(e.result.started_at)) / 1000;
    if (Number.isFinite(s)) duration.observe({ target: e.target, status: e.result.status }, s);
  });
  return registry;
}

/**
 * Our servers' own counters: tests served, refusals by reason, and bytes moved, by server (its
 * protocol's type). The counts are read from the servers when scraped.
 */
function servedMetrics(registry: Registry, inbound: Inbound, runner: Runner): void {
  new Counter({
    name: 'bandwidth_probe_served_sessions_total',
    help: 'Tests other clients ran against our servers since the service started, by server',
    labelNames: ['server'],
    registers: [registry],
    collect() {
      this.reset();
      for (const x of inbound.servers) this.inc({ server: x.protocol.type }, x.running.counters().sessions);
    },
  });
  new Counter({
    name: 'bandwidth_probe_served_refused_total',
    help: 'Connections our servers refused since the service started, by server and reason',
    labelNames: ['server', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const x of inbound.servers)
        for (const [reason, n] of Object.entries(x.running.counters().refused))
          this.inc({ server: x.protocol.type, reason }, n);
    },
  });
  const bytes = new Counter({
    name: 'bandwidth_probe_served_bytes_total',
    help: 'Payload bytes of the tests our servers served, by server and direction (sent = to the peer)',
    labelNames: ['server', 'direction'],
    registers: [registry],
  });
  for (const x of inbound.servers)
    for (const direction of ['sent', 'received']) bytes.inc({ server: x.protocol.type, direction }, 0);
  runner.on((e) => {
    if (e.type !== 'inbound' || !e.result.inbound) return;
    const server = protocolOf(e.result.target.kind)?.type ?? e.result.target.kind;
    bytes.inc({ server, direction: 'sent' }, e.result.inbound.bytes_sent);
    bytes.inc({ server, direction: 'received' }, e.result.inbound.bytes_received);
  });
}
