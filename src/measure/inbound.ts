import type { ErrorCode } from '../errors.js';
import {
  bracketHost,
  type DirectionResult,
  type InboundInfo,
  type InboundKind,
  type RunResult,
} from './result.js';
import { intervalSeries, type Point, round3, tStarSpeed } from './speed.js';

/**
 * Inbound tests: a test a router or another probe runs against one of our servers is a run
 * too, stored with the scheduled ones under the pseudo-target `inbound`. Figures are from the peer's
 * point of view, as the peer reports its own test: `download` is what we sent it, `upload` what it
 * sent us. Pure functions from a server's session report to a RunResult.
 */
export const INBOUND_TARGET = 'inbound';
export type { InboundInfo, InboundKind } from './result.js';

/** One direction as the server saw it: per-connection cumulative points, with each point's origin. */
export interface InboundDirection {
  /** (t ns since the connection's phase began, cumulative bytes), one list per connection */
  streams: Point[][];
  /** payload bytes of each connection in this direction */
  totals: number[];
}

export interface InboundReport {
  kind: InboundKind;
  started_at: Date;
  finished_at: Date;
  info: InboundInfo;
  /** what the peer downloaded (we sent) / uploaded (we received) */
  download?: InboundDirection;
  upload?: InboundDirection;
  /** a btest UDP receive: loss figures of the peer's datagrams */
  udp?: { packets: number; lost: number };
  engine: 'native' | 'js';
  local_cpu_percent?: number;
  error?: { code: ErrorCode; message: string };
}

/** The rate by the t* rule over the connections (as clients compute it), with a 1 s series. */
export function inboundDirection(d: InboundDirection): DirectionResult | undefined {
  const streams = d.streams.filter((s) => s.length > 0);
  if (!streams.length) return undefined;
  const speed = tStarSpeed(streams);
  if (!speed) return undefined;
  const bytesTotal = d.totals.reduce((a, b) => a + b, 0);
  return {
    mbps: round3(speed.bps / 1e6),
    bytes: Math.round(speed.bytes),
    bytes_total: bytesTotal,
    duration_ms: round3(speed.tStarNs / 1e6),
    streams: streams.length,
    timing: 'client',
    series: intervalSeries(streams, speed.tStarNs, 1e9),
    per_stream: streams.map((s, i) => {
      const at = speed.perThread[i] ?? 0;
      const last = s.at(-1)!;
      return {
        stream: i,
        bytes: last.b,
        bytes_at_t_star: Math.round(at),
        duration_ms: round3(last.t / 1e6),
        mbps: round3((at * 8 * 1e3) / speed.tStarNs),
      };
    }),
  };
}

export function inboundResult(r: InboundReport): RunResult {
  const download = r.download ? inboundDirection(r.download) : undefined;
  const upload = r.upload ? inboundDirection(r.upload) : undefined;
  if (upload && r.udp) {
    const expected = r.udp.packets + r.udp.lost;
    upload.udp = {
      packets: r.udp.packets,
      lost: r.udp.lost,
      loss_percent: expected ? round3((r.udp.lost / expected) * 100) : 0,
      duplicates: 0,
      reordered: 0,
      jitter_ms: 0,
      jitter_kind: 'interarrival',
    };
  }
  const cpu: RunResult['cpu'] = {};
  if (r.local_cpu_percent !== undefined) cpu.local_percent = r.local_cpu_percent;
  if (r.info.remote_cpu_percent !== undefined) cpu.remote_percent = r.info.remote_cpu_percent;
  // A test the peer ended early is still what the peer measured; one we ended (a quota or a limit) is
  // marked so, and an error (the peer vanished before moving anything) is a failed run.
  const failed = r.error !== undefined && !download && !upload;
  return {
    target: { id: INBOUND_TARGET, kind: r.kind },
    server: { host: r.info.peer, port: r.info.peer_port },
    started_at: r.started_at.toISOString(),
    finished_at: r.finished_at.toISOString(),
    status: failed ? 'failed' : 'ok',
    ...(r.error ? { error: r.error } : {}),
    engine: r.engine,
    ...(download ? { download } : {}),
    ...(upload ? { upload } : {}),
    cpu,
    flags: [],
    inbound: r.info,
  };
}

/** The figures the "inbound" target's sensors and the Served table show (the peer's view). */
export function inboundHeadline(r: RunResult): { peer: string; lost_packets: number | null } {
  const i = r.inbound;
  if (!i) return { peer: '', lost_packets: null };
  return {
    peer: bracketHost(i.peer),
    lost_packets: i.lost_packets ?? null,
  };
}
