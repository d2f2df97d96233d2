import type { GeneralSettings } from '../config/schema.js';
import type { Engine } from '../engine/types.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { type LatencySet, latencyResult, latencySet } from '../measure/latency.js';
import {
  type DirectionResult,
  markFailed,
  type Ndt7Details,
  type PingStats,
  type RunResult,
  startResult,
} from '../measure/result.js';
import { intervalSeries, type Point, round3, withEnd } from '../measure/speed.js';
import { median } from '../measure/stats.js';
import { splitHostPort } from '../net/hostport.js';
import { connectRtt, pace } from '../net/probe.js';
import { type Ndt7Endpoint, readCa, runTest, type TestOutcome, UpgradeRefused } from './client.js';
import { clientParams, type LocatedServer, locate } from './locate.js';
import { DOWNLOAD_PATH, EARLY_EXIT_MB, type Measurement, UPLOAD_PATH } from './messages.js';
import type { Ndt7Settings } from './settings.js';

export interface Ndt7Context {
  engine: Engine;
  general: GeneralSettings;
  log?: Logger;
  signal?: AbortSignal;
  targetId?: string;
  onPhase?: (phase: string) => void;
  onProgress?: (direction: 'download' | 'upload', mbps: number) => void;
  /** the upload's length (ms); the spec's ten seconds unless a test of ours asks for less */
  testMs?: number;
}

const SECOND = 1e9;

/** The test URLs of a target's own server. */
export function ownEndpoints(s: Ndt7Settings): { download: URL; upload: URL; host: string; port: number } {
  const hp = splitHostPort(s.server!);
  const port = hp.port ?? (s.scheme === 'wss' ? 443 : 80);
  const host = hp.host.includes(':') ? `[${hp.host}]` : hp.host;
  const make = (path: string) => new URL(`${s.scheme}://${host}:${port}${path}?${clientParams()}`);
  return { download: make(DOWNLOAD_PATH), upload: make(UPLOAD_PATH), host: hp.host, port };
}

/** Whether a target uses M-Lab's servers (no server of its own): those need consent and M-Lab's rules. */
export function usesMlab(s: Ndt7Settings): boolean {
  return !s.server;
}

function withEarlyExit(u: string | URL, on: boolean): URL {
  const url = new URL(u);
  if (on) url.searchParams.set('early_exit', String(EARLY_EXIT_MB));
  return url;
}

/** One ndt7 measurement into the common result model; never throws (failures are results). */
export async function measureNdt7(s: Ndt7Settings, ctx: Ndt7Context): Promise<RunResult> {
  const started = new Date();
  const own = s.server ? ownEndpoints(s) : undefined;
  const result: RunResult = {
    ...startResult(
      { id: ctx.targetId ?? 'ndt7', kind: 'ndt7' },
      { host: own?.host ?? new URL(s.locate_url).host, port: own?.port ?? 0, transport: s.scheme },
      ctx.engine.kind,
      started,
    ),
  };
  const details: Ndt7Details = { located: !own, bytes_used: 0, early_exit: s.early_exit };
  result.ndt7 = details;
  try {
    if (!own && !s.accept_data_policy) throw new ProbeError('BP_ERR_NDT7_CONSENT', consentText());
    const tlsOpts = own
      ? { insecure: s.tls_insecure, ...(s.ca ? { ca: readCa(s.ca) } : {}) }
      : // M-Lab's servers are checked against the system's CAs, always
        { insecure: false };
    const candidates: Candidate[] = own
      ? [{ download: own.download, upload: own.upload, host: own.host, port: own.port }]
      : await located(s, ctx);
    let relocated = false;
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!;
      result.server = {
        host: c.host,
        port: c.port,
        transport: s.scheme,
        ...(c.located?.machine ? { name: c.located.machine } : {}),
      };
      try {
        await runBoth(s, ctx, c, tlsOpts, result, details);
        break;
      } catch (err) {
        const e = toProbeError(err);
        const started = Boolean(result.download || result.upload);
        // before a test moved anything, the next server Locate listed is tried; a refused token (it
        // lives one minute) is worth one more question to Locate
        if (started || own || e.code === 'BP_ERR_ABORTED' || ctx.signal?.aborted) throw e;
        ctx.log?.warn(
          { server: c.host, code: e.code, err: e.message },
          'ndt7 server failed; trying the next one',
        );
        if (err instanceof UpgradeRefused && err.tokenRefused && !relocated) {
          relocated = true;
          candidates.splice(i + 1, candidates.length, ...(await located(s, ctx)));
          continue;
        }
        if (i === candidates.length - 1) throw e;
      }
    }
  } catch (err) {
    markFailed(result, err, Boolean(ctx.signal?.aborted));
  }
  result.finished_at = new Date().toISOString();
  return result;
}

export function consentText(): string {
  return "this target uses M-Lab's public servers: M-Lab publishes every result with your public IP address as open data (CC0) and keeps it indefinitely (https://www.measurementlab.net/privacy/); set accept_data_policy: true to consent, or name your own ndt7 server";
}

interface Candidate {
  download: URL;
  upload: URL;
  host: string;
  port: number;
  located?: LocatedServer;
}

async function located(s: Ndt7Settings, ctx: Ndt7Context): Promise<Candidate[]> {
  ctx.onPhase?.('locate');
  const list = await locate(s.locate_url, s.scheme, { timeoutMs: s.io_timeout * 1000, signal: ctx.signal });
  return list.map((l) => {
    const dl = new URL(l.download);
    return {
      download: withEarlyExit(dl, s.early_exit),
      upload: new URL(l.upload),
      host: dl.hostname.replace(/^\[|\]$/g, ''),
      port: dl.port ? Number(dl.port) : s.scheme === 'wss' ? 443 : 80,
      located: l,
    };
  });
}

async function runBoth(
  s: Ndt7Settings,
  ctx: Ndt7Context,
  c: Candidate,
  tls: Ndt7Endpoint['tls'],
  result: RunResult,
  details: Ndt7Details,
): Promise<void> {
  if (c.located) {
    const { city, country } = c.located;
    Object.assign(details, {
      machine: c.located.machine,
      ...(city ? { city } : {}),
      ...(country ? { country } : {}),
    });
  }
  const probe = () =>
    connectRtt({ host: c.host, port: c.port, timeoutMs: s.io_timeout * 1000 }).then((ms) => ({ ms }));
  // idle: five TCP connects to the server's port before the tests (the line is quiet then)
  let idle: LatencySet | undefined;
  let idleError: string | undefined;
  if (s.loaded_latency) {
    ctx.onPhase?.('latency');
    const p = pace(probe, { intervalMs: 100, maxSamples: 5 });
    await p.finished;
    const o = await p.stop();
    idle = latencySet('tcp_connect', o.samples, o.error ? { error: o.error } : {});
    idleError = o.error;
  }
  const base = {
    engine: ctx.engine,
    ipVersion: s.ip_version,
    timeoutMs: s.io_timeout * 1000,
    signal: ctx.signal,
    ...(ctx.testMs ? { testMs: ctx.testMs } : {}),
  };
  let dl: TestOutcome | undefined;
  let ul: TestOutcome | undefined;
  let ulProbes: Awaited<ReturnType<ReturnType<typeof pace>['stop']>> | undefined;
  if (s.direction !== 'upload') {
    ctx.onPhase?.('download');
    dl = await runTest({ url: withEarlyExit(c.download, s.early_exit && !c.located), tls }, 'download', {
      ...base,
      onProgress: (mbps) => ctx.onProgress?.('download', mbps),
    });
    result.download = ownDirection(dl);
    result.engine = dl.engine;
    if (dl.tls) result.server.tls = dl.tls;
  }
  if (s.direction !== 'download') {
    ctx.onPhase?.('upload');
    let pacer: ReturnType<typeof pace> | undefined;
    ul = await runTest({ url: c.upload, tls }, 'upload', {
      ...base,
      onProgress: (mbps) => ctx.onProgress?.('upload', mbps),
      onStart: () => {
        // loaded upload: TCP connects every 200 ms beside the test (bounded: 15 s at most)
        if (s.loaded_latency) pacer = pace(probe, { intervalMs: 200, firstDelayMs: 200, maxSamples: 75 });
      },
    }).finally(async () => {
      ulProbes = await pacer?.stop(500);
    });
    const fromServer = serverUpload(ul);
    result.upload = fromServer.figure ?? ownDirection(ul);
    details.upload_source = fromServer.figure ? 'server' : 'client';
    if (fromServer.note) details.upload_note = fromServer.note;
    if (ul.tls) result.server.tls ??= ul.tls;
    if (!dl) result.engine = ul.engine;
  }
  details.bytes_used = (dl?.bytes ?? 0) + (ul?.bytes ?? 0);
  if (dl) details.download_end = dl.end;
  if (ul) details.upload_end = ul.end;
  const last = lastWithTcpInfo(dl?.server) ?? lastWithTcpInfo(ul?.server);
  const any = (dl?.server ?? []).concat(ul?.server ?? []);
  const ci = any.find((m) => m.ConnectionInfo)?.ConnectionInfo;
  if (ci?.Client) details.client = ci.Client;
  if (ci?.UUID) details.uuid = ci.UUID;
  const minRtt = last?.TCPInfo?.MinRTT;
  if (minRtt && minRtt > 0 && minRtt < 60e6) {
    details.min_rtt_ms = round3(minRtt / 1e3);
    result.ping = minRttPing(details.min_rtt_ms, idle);
  }
  const dlInfo = lastWithTcpInfo(dl?.server)?.TCPInfo;
  if (dlInfo?.BytesSent && dlInfo.BytesRetrans !== undefined && dlInfo.BytesRetrans <= dlInfo.BytesSent)
    details.retrans_percent = round3((dlInfo.BytesRetrans / dlInfo.BytesSent) * 100);
  result.figures = figuresOf(details, result.server);
  if (s.loaded_latency) {
    const dlSet = dl ? latencySet('tcp_info_rtt', dl.serverRtt) : undefined;
    const ulSet =
      ulProbes &&
      latencySet('tcp_connect', ulProbes.samples, {
        ...(ulProbes.error ? { error: ulProbes.error } : {}),
        ...(ulProbes.loop_delay_ms !== undefined ? { loop_delay_ms: ulProbes.loop_delay_ms } : {}),
        started_ms: ulProbes.started_ms,
      });
    result.latency = latencyResult(
      {
        ...(idle ? { idle } : {}),
        ...(dlSet ? { download: dlSet } : {}),
        ...(ulSet ? { upload: ulSet } : {}),
      },
      idleError && !idle
        ? `TCP connects to the ndt7 port failed: ${idleError}`
        : dl && !dlSet
          ? 'the server sent no TCPInfo round trips during the download'
          : undefined,
    );
    if (result.latency.limited) result.flags.push('latency_limited');
  }
}

/** A direction from our own byte count over time (the download, as M-Lab's clients compute it). */
function ownDirection(t: TestOutcome): DirectionResult {
  const points = withEnd(t.points as Point[], t.bytes, t.durationNs);
  const d = Math.max(1, t.durationNs);
  return {
    mbps: round3((t.bytes * 8 * 1e3) / d),
    bytes: t.bytes,
    bytes_total: t.bytes,
    duration_ms: round3(d / 1e6),
    streams: 1,
    timing: 'client',
    series: intervalSeries([points], d, SECOND),
    per_stream: [
      {
        stream: 0,
        bytes: t.bytes,
        bytes_at_t_star: t.bytes,
        duration_ms: round3(d / 1e6),
        mbps: round3((t.bytes * 8 * 1e3) / d),
      },
    ],
  };
}

function lastWithTcpInfo(ms: Measurement[] | undefined): Measurement | undefined {
  if (!ms) return undefined;
  for (let i = ms.length - 1; i >= 0; i--) if (ms[i]!.TCPInfo) return ms[i];
  return undefined;
}

/**
 * The upload as M-Lab's clients take it: the server's last TCPInfo.BytesReceived over its ElapsedTime.
 * A figure the server could not have seen (more bytes than we sent, a time far from the test's) is
 * refused and our own count stands, with the reason.
 */
function serverUpload(t: TestOutcome): { figure?: DirectionResult; note?: string } {
  const withBytes = t.server.filter((m) => m.TCPInfo?.BytesReceived !== undefined && m.TCPInfo.ElapsedTime);
  const last = withBytes.at(-1);
  if (!last) return { note: 'the server sent no TCPInfo.BytesReceived: our own count of bytes sent' };
  const bytes = last.TCPInfo!.BytesReceived!;
  const us = last.TCPInfo!.ElapsedTime!;
  // TCP payload includes WebSocket headers and TLS records: a few % over our payload count at most
  const most = t.bytes * 1.1 + 1e6;
  const ourUs = t.durationNs / 1e3;
  if (bytes > most || us > ourUs * 2 + 5e6 || us < ourUs / 4)
    return {
      note: `the server's TCPInfo (${bytes} bytes in ${Math.round(us / 1e3)} ms) does not fit what we sent (${t.bytes} bytes in ${Math.round(ourUs / 1e3)} ms): our own count`,
    };
  const points: Point[] = withBytes.map((m) => ({
    t: m.TCPInfo!.ElapsedTime! * 1e3,
    b: m.TCPInfo!.BytesReceived!,
  }));
  const d = us * 1e3;
  return {
    figure: {
      mbps: round3((bytes * 8) / us),
      bytes,
      bytes_total: bytes,
      duration_ms: round3(us / 1e3),
      streams: 1,
      timing: 'server',
      series: intervalSeries([points], d, SECOND),
      per_stream: [],
    },
  };
}

/** The ping figure: the server's MinRTT (what M-Lab's clients show), with our idle connects beside it. */
function minRttPing(ms: number, idle: LatencySet | undefined): PingStats {
  return {
    median_ms: ms,
    min_ms: ms,
    max_ms: ms,
    mean_ms: ms,
    stddev_ms: 0,
    jitter_ms: 0,
    p95_ms: ms,
    p99_ms: ms,
    count: 1,
    client_median_ms: idle ? round3(median(idle.samples.map((x) => x.ms))) : ms,
    histogram: [],
  };
}

/** The figures ndt7 publishes of its own: retransmissions and where the server is. */
function figuresOf(d: Ndt7Details, server: RunResult['server']): Record<string, number | string> {
  const where = [d.city, d.country].filter(Boolean).join(', ');
  return {
    ...(d.retrans_percent !== undefined ? { retransmissions: d.retrans_percent } : {}),
    server_location: where ? `${d.machine ?? server.host} (${where})` : (d.machine ?? server.host),
  };
}
