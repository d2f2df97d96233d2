import { directionResult } from '../measure/direction.js';
import { type PingStats, pingStats, type RunResult } from '../measure/result.js';
import type { RmbtRaw } from './client.js';
import { CLIENT_NAME, SOFTWARE_VERSION } from './control.js';

/** Common-model figures from what the RMBT phases recorded. */
export function rmbtFigures(
  raw: RmbtRaw,
): Pick<RunResult, 'download' | 'upload' | 'connections'> & { ping?: PingStats } {
  const dl =
    raw.download &&
    directionResult(raw.download.threads, raw.download.totals, 'client', raw.download.chunkSize);
  const ul =
    raw.upload && directionResult(raw.upload.threads, raw.upload.totals, 'server', raw.upload.chunkSize);
  const ping = pingStats(raw.pings);
  return {
    ...(dl ? { download: dl } : {}),
    ...(ul ? { upload: ul } : {}),
    ...(ping ? { ping } : {}),
    connections: raw.connections,
  };
}

/**
 * The body of `POST /result` (specs/rmbt.md §6.3): speeds in kbit/s (integers), bytes and t* in ns,
 * pings in ns, per-thread `speed_detail` with a (0, 0) anchor like PYC sends.
 */
export function resultBody(
  raw: RmbtRaw,
  result: RunResult,
  ids: { token: string; testUuid?: string; clientUuid: string; port: number; encryption: boolean },
): Record<string, unknown> {
  const speedDetail: { direction: string; thread: number; time: number; bytes: number }[] = [];
  for (const [direction, d] of [
    ['download', raw.download],
    ['upload', raw.upload],
  ] as const) {
    d?.threads.forEach((pts, thread) => {
      speedDetail.push({ direction, thread, time: 0, bytes: 0 });
      for (const p of pts)
        speedDetail.push({ direction, thread, time: Math.round(p.t), bytes: Math.round(p.b) });
    });
  }
  const dl = result.download;
  const ul = result.upload;
  return {
    test_token: ids.token,
    ...(ids.testUuid ? { test_uuid: ids.testUuid } : {}),
    client_uuid: ids.clientUuid,
    client_name: CLIENT_NAME,
    client_version: SOFTWARE_VERSION,
    client_software_version: SOFTWARE_VERSION,
    client_language: 'en',
    platform: 'CLI',
    model: 'Bandwidth Probe',
    product: 'bandwidth-probe',
    type: 'DESKTOP',
    version_code: '1',
    timezone: 'UTC',
    time: raw.startedMs,
    network_type: 98,
    geoLocations: [],
    test_status: result.status === 'ok' ? '0' : '1',
    test_port_remote: ids.port,
    test_encryption: ids.encryption ? 'TLS' : 'NONE',
    test_num_threads: dl?.streams ?? 0,
    num_threads_ul: ul?.streams ?? 0,
    test_bytes_download: dl?.bytes ?? 0,
    test_bytes_upload: ul?.bytes ?? 0,
    test_nsec_download: dl ? Math.round(dl.duration_ms * 1e6) : 0,
    test_nsec_upload: ul ? Math.round(ul.duration_ms * 1e6) : 0,
    test_speed_download: dl ? Math.round(dl.mbps * 1000) : 0,
    test_speed_upload: ul ? Math.round(ul.mbps * 1000) : 0,
    test_ping_shortest: raw.pings.length ? Math.min(...raw.pings.map((p) => p.serverNs)) : 0,
    pings: raw.pings.map((p) => ({ value: p.clientNs, value_server: p.serverNs, time_ns: p.timeNs })),
    speed_detail: speedDetail,
    user_server_selection: false,
  };
}
