import { directionResult } from '../measure/direction.js';
import { type LatencyResult, type LatencySet, latencyResult, latencySet } from '../measure/latency.js';
import { type PingStats, pingStats, type RunResult } from '../measure/result.js';
import type { Point } from '../measure/speed.js';
import { unmapIp } from '../util/netif.js';
import type { LoadedRaw, RmbtRaw } from './client.js';
import { CLIENT_NAME, PROTOCOL_VERSION, SOFTWARE_VERSION, timeZone } from './control.js';

/** Common-model figures from what the RMBT phases recorded. */
export function rmbtFigures(
  raw: RmbtRaw,
): Pick<RunResult, 'download' | 'upload' | 'connections'> & { ping?: PingStats; latency?: LatencyResult } {
  const dl =
    raw.download &&
    directionResult(raw.download.threads, raw.download.totals, 'client', raw.download.chunkSize);
  const ul =
    raw.upload && directionResult(raw.upload.threads, raw.upload.totals, 'server', raw.upload.chunkSize);
  const ping = pingStats(raw.pings);
  const latency = rmbtLatency(raw);
  return {
    ...(dl ? { download: dl } : {}),
    ...(ul ? { upload: ul } : {}),
    ...(ping ? { ping } : {}),
    ...(latency ? { latency } : {}),
    connections: raw.connections,
  };
}

/**
 * Latency sets of an RMBT run: idle from the ping phase's client-side times (PING → PONG, the same
 * measure the probe connection takes under load), download and upload from the probe connection.
 */
export function rmbtLatency(raw: RmbtRaw): LatencyResult | undefined {
  const t0 = raw.pings[0]?.timeNs ?? 0;
  const idle = latencySet(
    'rmbt_ping',
    raw.pings.map((x) => ({ t_ms: (x.timeNs - t0) / 1e6, ms: x.clientNs / 1e6 })),
  );
  const loaded = (l: LoadedRaw | undefined): LatencySet | undefined =>
    l &&
    latencySet('rmbt_ping', l.pings.samples, {
      connect: l.connects.samples,
      ...(l.pings.error ? { error: l.pings.error } : {}),
      probe_bytes: l.pings.bytes,
      ...(l.pings.loop_delay_ms !== undefined ? { loop_delay_ms: l.pings.loop_delay_ms } : {}),
      started_ms: l.pings.started_ms,
    });
  const download = loaded(raw.loaded.download);
  const upload = loaded(raw.loaded.upload);
  if (!idle && !download && !upload) return undefined;
  return latencyResult(
    { ...(idle ? { idle } : {}), ...(download ? { download } : {}), ...(upload ? { upload } : {}) },
    raw.loaded.unavailable,
  );
}

/** The reference clients record a point every 40 ms per thread (WS, CLI, PYC; research F6). */
export const DETAIL_GAP_NS = 40_000_000;

/**
 * One thread's points thinned to at least `gapNs` apart, for `speed_detail` (F6: every feedback line of
 * RMBTD's 1 ms PUT reports would make a body of megabytes, past nginx's default 1 MB limit). Kept
 * always: the last point at or before t* and the first after it (so t* can be recomputed from what is
 * sent) and the final point. The full series stays in our own result.
 */
export function thinPoints(points: readonly Point[], tStarNs: number, gapNs = DETAIL_GAP_NS): Point[] {
  const out: Point[] = [];
  let lastT = Number.NEGATIVE_INFINITY;
  points.forEach((p, i) => {
    const next = points[i + 1];
    const aroundTStar =
      (p.t <= tStarNs && (!next || next.t > tStarNs)) ||
      (p.t > tStarNs && (i === 0 || points[i - 1]!.t <= tStarNs));
    if (p.t - lastT >= gapNs || aroundTStar || !next) {
      out.push(p);
      lastT = p.t;
    }
  });
  return out;
}

/**
 * The body of `POST /result` (specs/rmbt.md §6.3, field by field against the operators' code in
 * research/rmbt-deployments.md §5/§6): speeds in kbit/s (integers), bytes and t* in ns, pings in ns with
 * their offset from the test start, per-thread `speed_detail` with a (0, 0) anchor like PYC sends,
 * thinned to the reference clients' 40 ms.
 */
export function resultBody(
  raw: RmbtRaw,
  result: RunResult,
  ids: {
    token: string;
    testUuid?: string;
    clientUuid: string;
    port: number;
    encryption: boolean;
    networkType: number;
  },
): Record<string, unknown> {
  const dl = result.download;
  const ul = result.upload;
  const speedDetail: { direction: string; thread: number; time: number; bytes: number }[] = [];
  for (const [direction, d, r] of [
    ['download', raw.download, dl],
    ['upload', raw.upload, ul],
  ] as const) {
    const tStar = r ? r.duration_ms * 1e6 : Number.POSITIVE_INFINITY;
    d?.threads.forEach((pts, thread) => {
      speedDetail.push({ direction, thread, time: 0, bytes: 0 });
      for (const p of thinPoints(pts, tStar))
        speedDetail.push({ direction, thread, time: Math.round(p.t), bytes: Math.round(p.b) });
    });
  }
  const ws = raw.transport === 'ws' || raw.transport === 'wss';
  const localIp = unmapIp(raw.localIp);
  const serverIp = unmapIp(raw.serverIp);
  return {
    test_token: ids.token,
    ...(ids.testUuid ? { test_uuid: ids.testUuid } : {}),
    client_uuid: ids.clientUuid,
    // RTR's CLI names the WebSocket client RMBTws (main.c), the others RMBT (F13).
    client_name: ws ? 'RMBTws' : CLIENT_NAME,
    // The measurement server's version, as every reference client sends it; ours goes in
    // client_software_version (F4/F7: operators filter open data on client_version).
    client_version: raw.version || PROTOCOL_VERSION,
    client_software_version: SOFTWARE_VERSION,
    client_language: 'en',
    // The legacy and the Specure servers read only the misspelt key, CTRL reads both (F13).
    platform: 'CLI',
    plattform: 'CLI',
    model: 'Bandwidth Probe',
    product: 'bandwidth-probe',
    type: 'DESKTOP',
    version_code: '1',
    timezone: timeZone(),
    time: raw.startedMs,
    network_type: ids.networkType,
    geoLocations: [],
    test_status: result.status === 'ok' ? '0' : '1',
    test_port_remote: ids.port,
    test_encryption: ids.encryption ? 'TLS' : 'NONE',
    ...(localIp ? { test_ip_local: localIp } : {}),
    ...(serverIp ? { test_ip_server: serverIp } : {}),
    test_num_threads: dl?.streams ?? 0,
    num_threads_ul: ul?.streams ?? 0,
    test_bytes_download: dl?.bytes ?? 0,
    test_bytes_upload: ul?.bytes ?? 0,
    test_total_bytes_download: raw.totalBytes.download,
    test_total_bytes_upload: raw.totalBytes.upload,
    test_nsec_download: dl ? Math.round(dl.duration_ms * 1e6) : 0,
    test_nsec_upload: ul ? Math.round(ul.duration_ms * 1e6) : 0,
    ...(raw.download ? { time_dl_ns: raw.download.startNs } : {}),
    ...(raw.upload ? { time_ul_ns: raw.upload.startNs } : {}),
    test_speed_download: dl ? Math.round(dl.mbps * 1000) : 0,
    test_speed_upload: ul ? Math.round(ul.mbps * 1000) : 0,
    test_ping_shortest: raw.pings.length ? Math.min(...raw.pings.map((p) => p.serverNs)) : 0,
    pings: raw.pings.map((p) => ({ value: p.clientNs, value_server: p.serverNs, time_ns: p.timeNs })),
    speed_detail: speedDetail,
    user_server_selection: false,
  };
}
