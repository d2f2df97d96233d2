import { bounded, MAX_DETAIL } from '../errors.js';
import { inboundHeadline } from '../measure/inbound.js';
import { headlineFigures, type RunResult, type RunStatus, serverLabel } from '../measure/result.js';

export { serverLabel };

/**
 * Every topic the probe uses and the payload it carries (zigbee2mqtt-style: one type per topic).
 *
 *   <base>/<device>/status              availability: online | offline (retained, the LWT)
 *   <base>/<device>/run                 command: run now; payload empty, "all" or a target id
 *   <base>/<device>/<target>/run        command: run this target now (the HA button presses "RUN")
 *   <base>/<device>/<target>/state      TargetState JSON of the latest run (retained)
 *   <base>/<device>/<target>/running    ON | OFF (retained)
 *   <base>/<device>/<target>/event      RunEvent JSON, one per finished run (QoS 1, not retained)
 *   <prefix>/device/<device>/config     device-based discovery (retained)
 */
export class Topics {
  readonly root: string;
  constructor(
    base: string,
    readonly deviceId: string,
    readonly discoveryPrefix: string,
  ) {
    this.root = `${base}/${deviceId}`;
  }
  get availability(): string {
    return `${this.root}/status`;
  }
  get runAll(): string {
    return `${this.root}/run`;
  }
  get discovery(): string {
    return `${this.discoveryPrefix}/device/${this.deviceId}/config`;
  }
  run(target: string): string {
    return `${this.root}/${target}/run`;
  }
  state(target: string): string {
    return `${this.root}/${target}/state`;
  }
  running(target: string): string {
    return `${this.root}/${target}/running`;
  }
  event(target: string): string {
    return `${this.root}/${target}/event`;
  }
  /** The target a command topic addresses: 'all', an id, or undefined when it is not a command topic. */
  commandTarget(topic: string): string | undefined {
    if (topic === this.runAll) return 'all';
    const m = topic.startsWith(`${this.root}/`)
      ? /^([^/]+)\/run$/.exec(topic.slice(this.root.length + 1))
      : null;
    return m?.[1];
  }
}

export type OnOff = 'ON' | 'OFF';
export const PAYLOAD_RUN = 'RUN';

/**
 * The retained state of a target: its latest run. Figures are null when the run failed (HA shows
 * "unknown", never a false 0 — specs/ha-mqtt.md §5).
 */
export interface TargetState {
  status: RunStatus;
  download_mbps: number | null;
  upload_mbps: number | null;
  ping_ms: number | null;
  jitter_ms: number | null;
  loss_percent: number | null;
  /** latency under load: medians while the download / upload ran, RPM and the grade */
  download_latency_ms: number | null;
  upload_latency_ms: number | null;
  responsiveness_rpm: number | null;
  bufferbloat_grade: string | null;
  finished_at: string;
  started_at: string;
  server: string;
  /** ON / OFF, null when the run failed (no verdict) */
  below_threshold: OnOff | null;
  flags: string[];
  error_code: string | null;
  error: string | null;
  engine: string;
  run_id: number | null;
  /** false when the history could not keep the run (disk full): it exists only in this message */
  stored: boolean;
  /** inbound tests: who tested to us and how; download/upload are the peer's view */
  inbound?: {
    kind: string;
    peer: string;
    protocol: string;
    direction: string;
    user: string | null;
    bytes_sent: number;
    bytes_received: number;
    lost_packets: number | null;
  };
  /** a protocol's own figures (ndt7: retransmissions, the server's location) */
  figures?: Record<string, number | string>;
}

export type RunEventType = 'completed' | 'failed' | 'aborted' | 'skipped';
export const EVENT_TYPES: readonly RunEventType[] = ['completed', 'failed', 'aborted', 'skipped'];

/**
 * One finished run for the HA event entity: `event_type` plus attributes. Unlike the state (read by a
 * binary sensor's template, which wants ON/OFF), `below_threshold` is a boolean here: automations read
 * event attributes as they are (`trigger.to_state.attributes.below_threshold`).
 */
export interface RunEvent extends Omit<TargetState, 'below_threshold'> {
  event_type: RunEventType;
  target: string;
  below_threshold: boolean | null;
}

/**
 * The retained state of a target after run `r`. A skipped run made no measurement: with `lastOk` (the
 * target's last successful run) its figures stay what they were, and only the status says skipped.
 */
export function targetState(r: RunResult, runId: number | undefined, lastOk?: RunResult): TargetState {
  const keep = r.status === 'skipped' && lastOk?.status === 'ok' ? lastOk : undefined;
  const fig = keep ?? r;
  const ok = fig.status === 'ok';
  return {
    status: r.status,
    ...headlineFigures(fig),
    finished_at: r.finished_at,
    started_at: r.started_at,
    // bounded again here: the retained state is what every HA restart reads
    server: bounded(serverLabel(r.server), 160),
    below_threshold: ok ? (fig.flags.includes('below_threshold') ? 'ON' : 'OFF') : null,
    flags: r.flags,
    error_code: r.error?.code ?? null,
    error: r.error?.message === undefined ? null : bounded(r.error.message, MAX_DETAIL + 160),
    engine: r.engine,
    run_id: runId ?? null,
    stored: runId !== undefined,
    // a protocol's own figures, only where it has some (and only for a measurement)
    ...(ok && fig.figures ? { figures: fig.figures } : {}),
    ...(r.inbound
      ? {
          inbound: {
            kind: r.target.kind,
            peer: bounded(inboundHeadline(r).peer, 80),
            protocol: bounded(r.inbound.protocol, 40),
            direction: r.inbound.direction,
            user: r.inbound.user === undefined ? null : bounded(r.inbound.user, 64),
            bytes_sent: r.inbound.bytes_sent,
            bytes_received: r.inbound.bytes_received,
            lost_packets: r.inbound.lost_packets ?? null,
          },
        }
      : {}),
  };
}

export function runEvent(r: RunResult, runId: number | undefined): RunEvent {
  const event_type: RunEventType =
    r.status === 'ok' ? 'completed' : r.status === 'failed' ? 'failed' : r.status;
  const st = targetState(r, runId);
  return {
    event_type,
    target: r.target.id,
    ...st,
    below_threshold: st.below_threshold === null ? null : st.below_threshold === 'ON',
  };
}
