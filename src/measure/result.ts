import { type ErrorCode, ProbeError, SKIP_CODES, toProbeError } from '../errors.js';
import type { BufferbloatGrade, LatencyResult } from './latency.js';
import { round3 } from './speed.js';
import { histogram, jitter, mean, median, percentile, stddev } from './stats.js';

/**
 * The protocol-neutral result model every run publishes (design.md "Results"). JSON field names are
 * snake_case because they go out as-is over MQTT and the API (HA convention).
 */
/** `skipped`: the server asked us to come back later (SKIP_CODES); no measurement was made */
export type RunStatus = 'ok' | 'failed' | 'aborted' | 'skipped';
export const RUN_STATUSES: readonly RunStatus[] = ['ok', 'failed', 'aborted', 'skipped'];
export type EngineKind = 'native' | 'js';
export type QualityFlag =
  | 'cpu_limited'
  | 'link_busy'
  | 'below_threshold'
  | 'single_thread_fallback'
  /** an unlimited UDP sender had not found the path's rate by the end of its ramp */
  | 'udp_ramp'
  /** the probe's own event loop added a noticeable part of the loaded round trips */
  | 'latency_limited';

export interface PingStats {
  /** what RMBT reports: the median of the server-side values */
  median_ms: number;
  min_ms: number;
  max_ms: number;
  mean_ms: number;
  /** population standard deviation of the server-side values */
  stddev_ms: number;
  jitter_ms: number;
  p95_ms: number;
  p99_ms: number;
  count: number;
  /** the client-side view (send PING → receive PONG), for comparison */
  client_median_ms: number;
  histogram: { le_ms: number | null; count: number }[];
}

export interface StreamFigures {
  stream: number;
  bytes: number;
  /** bytes this stream held at t* */
  bytes_at_t_star: number;
  duration_ms: number;
  mbps: number;
}

export interface DirectionResult {
  /** Mbit/s by the t* rule */
  mbps: number;
  /** Σ bytes at t* */
  bytes: number;
  /** all bytes moved, including those after t* */
  bytes_total: number;
  duration_ms: number;
  streams: number;
  chunk_size?: number;
  /** where the time base comes from: the server (RMBT PUT feedback) or this probe */
  timing: 'client' | 'server';
  series: { t_ms: number; mbps: number }[];
  per_stream: StreamFigures[];
  /** UDP: what the receiver counted from sequence numbers */
  udp?: UdpFigures;
  /** unlimited UDP: the leading milliseconds of the sender's ramp, left out of mbps/bytes/duration_ms */
  ramp_ms?: number;
}

export interface UdpFigures {
  packets: number;
  lost: number;
  loss_percent: number;
  duplicates: number;
  reordered: number;
  /** RFC 3550 jitter when the sender stamps its packets (our peers), else inter-arrival deviation */
  jitter_ms: number;
  jitter_kind: 'rfc3550' | 'interarrival';
}

export interface ConnectionTiming {
  stream: number;
  connect_ms: number;
  tls_ms?: number;
  upgrade_ms?: number;
  /** from TCP connect start until the server accepted the token */
  ready_ms: number;
}

/** A test a peer ran against one of our servers: `<protocol>-server`. */
export type InboundKind = `${string}-server`;

export interface InboundInfo {
  /** the peer's address and source port */
  peer: string;
  peer_port: number;
  /** our listening port it came to */
  local_port: number;
  /** btest: the user it logged in as */
  user?: string;
  /** btest: tcp / udp; RMBT: the transport (plain, http, ws; `+tls` inside TLS) */
  protocol: string;
  /** the peer's view, in btest's words: receive = it downloaded, send = it uploaded */
  direction: 'receive' | 'send' | 'both';
  /** connections of the test (RMBT: every connection with its token, the latency probe's included) */
  connections: number;
  bytes_sent: number;
  bytes_received: number;
  duration_ms: number;
  /** btest UDP: datagrams of the peer that did not arrive */
  lost_packets?: number;
  /** btest UDP: what the peer's status messages said its CPU was (the last one) */
  remote_cpu_percent?: number;
  /** RMBT: PINGs answered, the token's uuid */
  pings?: number;
  test_uuid?: string;
  /** how the test ended: done, or why it was ended early */
  end: 'done' | 'quota' | 'limit' | 'error';
}

/** How an ndt7 test ended: the server closed (close frame, EOF, reset), our duration, the hard limit, or a stall near the end. */
export type Ndt7TestEnd = 'closed' | 'duration' | 'limit' | 'stalled';

/** What an ndt7 run adds to the result: the server M-Lab picked and how each figure was taken. */
export interface Ndt7Details {
  /** Locate picked the server (M-Lab), or the target names its own */
  located: boolean;
  machine?: string;
  city?: string;
  country?: string;
  /** the server's view of us (ConnectionInfo.Client: our public address and port) */
  client?: string;
  uuid?: string;
  /** how each test ended (the server closed, our duration, the hard limit) */
  download_end?: Ndt7TestEnd;
  upload_end?: Ndt7TestEnd;
  /** the upload figure: the server's TCPInfo (as M-Lab's clients take it) or our own count, flagged */
  upload_source?: 'server' | 'client';
  /** why our own count stands for the upload (the server sent no TCPInfo, or an impossible one) */
  upload_note?: string;
  /** BytesRetrans / BytesSent of the server's download connection, % */
  retrans_percent?: number;
  /** the server's MinRTT (ms), the ping figure */
  min_rtt_ms?: number;
  /** payload bytes both tests moved (for a data cap) */
  bytes_used: number;
  early_exit: boolean;
}

/** A run we made (its protocol's type), or a test a peer made against one of our servers. */
export type RunKind = string;

export interface RunResult {
  target: { id: string; kind: RunKind };
  server: {
    host: string;
    port: number;
    name?: string;
    transport?: string;
    encryption?: boolean;
    version?: string;
    address?: string;
    /** TLS transports: the negotiated protocol and cipher (IANA name), from either engine */
    tls?: { version: string; cipher: string };
  };
  started_at: string;
  finished_at: string;
  status: RunStatus;
  error?: { code: ErrorCode; message: string };
  engine: EngineKind;
  ping?: PingStats;
  /** round trips idle and under load, responsiveness and the bufferbloat grade */
  latency?: LatencyResult;
  download?: DirectionResult;
  upload?: DirectionResult;
  connections?: ConnectionTiming[];
  cpu: {
    local_percent?: number;
    remote_percent?: number;
    /** the whole machine during the run, % of all cores (service; cpu_limited is derived from it) */
    machine_percent?: number;
    /** this process during the run, % of one core */
    process_percent?: number;
  };
  flags: QualityFlag[];
  /** how the run came about (the service sets it; a CLI run has none) */
  trigger?: 'schedule' | 'manual' | 'start' | 'mqtt';
  /** the busy-line check before the run (service only) */
  pre?: {
    busy: boolean;
    reasons: string[];
    interface?: string;
    traffic_mbps?: number;
    idle_rtt_ms?: number;
    baseline_rtt_ms?: number;
    /** how often the run was postponed because the line looked busy */
    postponed: number;
  };
  /** thresholds of the target and which were missed (service only) */
  thresholds?: {
    download_mbps?: number;
    upload_mbps?: number;
    ping_ms?: number;
    /** the worse loaded median (download or upload) above it misses */
    loaded_latency_ms?: number;
    missed: ('download' | 'upload' | 'ping' | 'loaded_latency')[];
  };
  btest?: {
    auth: 'none' | 'md5' | 'ecsrp5';
    protocol: 'tcp' | 'udp';
    direction: 'receive' | 'send' | 'both';
    connections: number;
  };
  /**
   * A transfer by size (`bytes`): the limit per direction, and whether the test ended on it
   * (btest; RMBT's GETCHUNKS and counted PUT always move exactly it, or fail)
   */
  size_limit?: { bytes: number; reached: boolean };
  /** a test a peer ran against our server: who, how, and what it moved */
  inbound?: InboundInfo;
  ndt7?: Ndt7Details;
  /** figures of a protocol's own (ndt7's retransmissions), published as entities its descriptor lists */
  figures?: Record<string, number | string>;
  rmbt?: {
    test_uuid?: string;
    open_test_uuid?: string;
    client_uuid?: string;
    submitted: boolean;
    /** `--duration` overrode the control server's duration: what it handed out, what ran */
    control_duration_s?: number;
    duration_s?: number;
    submit_error?: string;
    /** why the result was deliberately not sent (e.g. a failed run, which RTR's control server discards) */
    submit_skipped?: string;
    /** where it was sent */
    result_url?: string;
    /** the control server that handed out the test (a family-pinned one when ip_version is 4 or 6) */
    control_url?: string;
    /** the client address the control server saw (the operator files the test under it) */
    client_ip?: string;
    /** loop-mode test of a scheduled series (F8) */
    loop_uuid?: string;
    loop_counter?: number;
    /** the network_type code sent (98 LAN, 99 WLAN, 106 Ethernet) */
    network_type?: number;
  };
}

export interface PingSample {
  clientNs: number;
  serverNs: number;
  /** offset of this ping from the start of the test (CTRL PingRequest: "relative time from the start of the test") */
  timeNs: number;
}

export function pingStats(samples: readonly PingSample[]): PingStats | undefined {
  if (samples.length === 0) return undefined;
  const server = samples.map((s) => s.serverNs / 1e6);
  const client = samples.map((s) => s.clientNs / 1e6);
  const r = (x: number) => round3(x);
  return {
    median_ms: r(median(server)),
    min_ms: r(Math.min(...server)),
    max_ms: r(Math.max(...server)),
    mean_ms: r(mean(server)),
    stddev_ms: r(stddev(server)),
    jitter_ms: r(jitter(server)),
    p95_ms: r(percentile(server, 95)),
    p99_ms: r(percentile(server, 99)),
    count: samples.length,
    client_median_ms: r(median(client)),
    histogram: histogram(server),
  };
}

/** Marks a run failed (or aborted, when its signal fired) with the coded error. */
export function markFailed(result: RunResult, err: unknown, aborted: boolean): void {
  const e = aborted ? new ProbeError('BP_ERR_ABORTED', 'the run was aborted') : toProbeError(err);
  result.status = e.code === 'BP_ERR_ABORTED' ? 'aborted' : SKIP_CODES.has(e.code) ? 'skipped' : 'failed';
  result.error = e.toJSON();
}

/** A run as it starts: status ok until something says otherwise, figures filled in as they come. */
export function startResult(
  target: RunResult['target'],
  server: RunResult['server'],
  engine: EngineKind,
  started: Date,
): RunResult {
  return {
    target,
    server,
    started_at: started.toISOString(),
    finished_at: started.toISOString(),
    status: 'ok',
    engine,
    cpu: {},
    flags: [],
  };
}

/**
 * The headline figures of a run as tables, exports and Home Assistant show them: a failed or aborted
 * run's partial figures are no measurement and are null.
 */
export function headlineFigures(r: RunResult): {
  download_mbps: number | null;
  upload_mbps: number | null;
  ping_ms: number | null;
  jitter_ms: number | null;
  loss_percent: number | null;
  download_latency_ms: number | null;
  upload_latency_ms: number | null;
  responsiveness_rpm: number | null;
  bufferbloat_grade: BufferbloatGrade | null;
} {
  const ok = r.status === 'ok';
  const val = <T>(v: T | undefined) => (ok && v !== undefined ? v : null);
  return {
    download_mbps: val(r.download?.mbps),
    upload_mbps: val(r.upload?.mbps),
    ping_ms: val(r.ping?.median_ms),
    jitter_ms: val(r.ping?.jitter_ms ?? r.download?.udp?.jitter_ms),
    // an inbound btest UDP test counts loss where the peer's datagrams arrived: its upload
    loss_percent: val(r.download?.udp?.loss_percent ?? r.upload?.udp?.loss_percent),
    download_latency_ms: val(r.latency?.download?.median_ms),
    upload_latency_ms: val(r.latency?.upload?.median_ms),
    responsiveness_rpm: val(r.latency?.responsiveness_rpm),
    bufferbloat_grade: val(r.latency?.grade),
  };
}

/**
 * What the server sensor shows: the server's name, else host:port, else the host of a URL (a run that
 * failed before a measurement server was known carries the control URL and port 0).
 */
export function serverLabel(server: RunResult['server']): string {
  if (server.name) return server.name;
  const host = server.host ?? '';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(host)) {
    try {
      return new URL(host).host;
    } catch {
      return host;
    }
  }
  if (!host) return '';
  return server.port ? `${bracketHost(host)}:${server.port}` : bracketHost(host);
}

/** An IPv6 address in brackets, as in a URL (`[2001:db8::1]:2000`); names and IPv4 as they are. */
export function bracketHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
