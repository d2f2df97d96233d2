import { lookup } from 'node:dns/promises';
import { setMaxListeners } from 'node:events';
import net from 'node:net';
import type { GeneralSettings } from '../config/schema.js';
import type { Engine } from '../engine/types.js';
import { ProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { RunResult } from '../measure/result.js';
import { round3 } from '../measure/speed.js';
import { mean, median, percentile, stddev } from '../measure/stats.js';

/**
 * `bandwidth-probe load <type>`: many concurrent clients against one server — ours, or a LAN
 * server — with connect-time statistics, each client's success and the aggregate throughput, the way
 * rpycbench's many-connection mode and wyndrvr's `--concurrent` load a server. Each client is the
 * probe's own client (the protocol's measure(), handed in as a LoadPeer), so what is measured is what a
 * real client sees.
 * Bounded: at most MAX_CLIENTS clients, each test bounded by its own duration and timeouts, and the
 * whole load by a deadline after which every client still running is aborted.
 */
export const MAX_CLIENTS = 256;
export const MAX_RAMP_S = 60;

/** One protocol's side of a load: where its clients go, and one client's test. */
export interface LoadPeer {
  /** the server as the user named it (the report shows it) */
  server: string;
  /** its host, for the check that it is one of the user's own */
  host: string;
  /** how long one client's test can take at most (its duration and timeouts) */
  perClientS: number;
  /** one client's test: the protocol's measure() with this load's settings (no latency probes) */
  measure(ctx: {
    engine: Engine;
    general: GeneralSettings;
    signal: AbortSignal;
    targetId: string;
  }): Promise<RunResult>;
}

export interface LoadOptions {
  protocol: string;
  peer: LoadPeer;
  clients: number;
  /** clients start evenly over this many seconds (0: all at once) */
  rampS: number;
  general: GeneralSettings;
  engine: Engine;
  log?: Logger;
  signal?: AbortSignal;
  /** a public address is refused unless this is set (a load is for servers you own) */
  allowPublic?: boolean;
  /** each finished client, as it finishes (progress on a terminal) */
  onClient?: (c: LoadClient, done: number) => void;
}

export interface LoadClient {
  client: number;
  started_ms: number;
  finished_ms: number;
  status: RunResult['status'];
  error_code: string | null;
  error: string | null;
  connect_ms: number | null;
  ready_ms: number | null;
  download_mbps: number | null;
  upload_mbps: number | null;
  bytes_received: number;
  bytes_sent: number;
}

export interface LoadReport {
  protocol: string;
  server: string;
  clients: number;
  ramp_s: number;
  started_at: string;
  finished_at: string;
  wall_ms: number;
  succeeded: number;
  failed: number;
  success_rate: number;
  errors: Record<string, number>;
  /** TCP connect (with the greeting, for btest) and until the server accepted the client */
  connect_ms: Spread | null;
  ready_ms: Spread | null;
  /** the clients' own figures summed (what the server served at once, if they overlapped) */
  sum_download_mbps: number;
  sum_upload_mbps: number;
  /** the clients' figures per client */
  per_client_download_mbps: Spread | null;
  per_client_upload_mbps: Spread | null;
  /** all payload bytes over the wall time from the first start to the last end */
  aggregate_download_mbps: number;
  aggregate_upload_mbps: number;
  bytes_received: number;
  bytes_sent: number;
  per_client: LoadClient[];
}

/** Loopback, RFC 1918, CGNAT 100.64/10, link-local, IPv6 ULA and link-local: addresses you may own. */
export function isPrivateAddress(ip: string): boolean {
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return (
      a === 10 ||
      a === 127 ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 169 && b === 254) ||
      (a === 100 && b >= 64 && b <= 127)
    );
  }
  const v = ip.toLowerCase();
  if (v.startsWith('::ffff:')) return isPrivateAddress(v.slice(7));
  return v === '::1' || /^f[cd]/.test(v) || /^fe[89ab]/.test(v);
}

async function checkOwned(host: string, allowPublic: boolean | undefined): Promise<void> {
  if (allowPublic) return;
  let addrs: string[];
  try {
    addrs = net.isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
  } catch (err) {
    throw new ProbeError('BP_ERR_DNS', `${host}: ${(err as Error).message}`);
  }
  const pub = addrs.find((a) => !isPrivateAddress(a));
  if (pub)
    throw new ProbeError(
      'BP_ERR_USAGE',
      `${host === pub ? host : `${host} (${pub})`} is a public address: load only servers you own, on your own network. If this one is yours, add --allow-public.`,
    );
}

/** How a figure spread over the clients (ms or Mbit/s, as the key says). */
export interface Spread {
  count: number;
  median: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
  stddev: number;
}

function stats(values: (number | null)[]): Spread | null {
  const v = values.filter((x): x is number => x !== null);
  if (!v.length) return null;
  return {
    count: v.length,
    median: round3(median(v)),
    p90: round3(percentile(v, 90)),
    p99: round3(percentile(v, 99)),
    min: round3(Math.min(...v)),
    max: round3(Math.max(...v)),
    mean: round3(mean(v)),
    stddev: round3(stddev(v)),
  };
}

export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  if (!Number.isInteger(o.clients) || o.clients < 1 || o.clients > MAX_CLIENTS)
    throw new ProbeError('BP_ERR_USAGE', `--clients takes 1 to ${MAX_CLIENTS}, not ${o.clients}`);
  if (!(o.rampS >= 0 && o.rampS <= MAX_RAMP_S))
    throw new ProbeError('BP_ERR_USAGE', `--ramp takes 0 to ${MAX_RAMP_S} seconds, not ${o.rampS}`);
  const { peer } = o;
  await checkOwned(peer.host, o.allowPublic);
  // Every client's test ends by itself (duration, io_timeout); the deadline catches what would not.
  const deadlineMs = (o.rampS + peer.perClientS + 30) * 1000;
  const ctrl = new AbortController();
  // every client's test listens on it (its connections, probes): many listeners are the point here
  setMaxListeners(o.clients * 8 + 16, ctrl.signal);
  const stop = () => ctrl.abort();
  o.signal?.addEventListener('abort', stop, { once: true });
  const deadline = setTimeout(stop, deadlineMs);
  const t0 = Date.now();
  const started = new Date();
  let done = 0;
  const one = async (i: number): Promise<LoadClient> => {
    const delay = o.clients > 1 ? (o.rampS * 1000 * i) / (o.clients - 1) : 0;
    if (delay) await new Promise((r) => setTimeout(r, delay));
    const startedMs = Date.now() - t0;
    const ctx = { engine: o.engine, general: o.general, signal: ctrl.signal, targetId: `load_${i}` };
    const r = ctrl.signal.aborted ? undefined : await peer.measure(ctx);
    const first = r?.connections?.[0];
    const c: LoadClient = {
      client: i,
      started_ms: startedMs,
      finished_ms: Date.now() - t0,
      status: r?.status ?? 'aborted',
      error_code: r ? (r.error?.code ?? null) : 'BP_ERR_ABORTED',
      error: r ? (r.error?.message ?? null) : 'the load was stopped before this client started',
      connect_ms: first?.connect_ms ?? null,
      ready_ms: first?.ready_ms ?? null,
      download_mbps: r?.status === 'ok' ? (r.download?.mbps ?? null) : null,
      upload_mbps: r?.status === 'ok' ? (r.upload?.mbps ?? null) : null,
      bytes_received: r?.download?.bytes_total ?? 0,
      bytes_sent: r?.upload?.bytes_total ?? 0,
    };
    done++;
    o.onClient?.(c, done);
    return c;
  };
  let per: LoadClient[];
  try {
    per = await Promise.all(Array.from({ length: o.clients }, (_, i) => one(i)));
  } finally {
    clearTimeout(deadline);
    o.signal?.removeEventListener('abort', stop);
  }
  const wallMs = Math.max(1, Date.now() - t0);
  const ok = per.filter((c) => c.status === 'ok');
  const errors: Record<string, number> = {};
  for (const c of per) if (c.error_code) errors[c.error_code] = (errors[c.error_code] ?? 0) + 1;
  const sum = (k: 'download_mbps' | 'upload_mbps') => round3(ok.reduce((a, c) => a + (c[k] ?? 0), 0));
  const received = per.reduce((a, c) => a + c.bytes_received, 0);
  const sent = per.reduce((a, c) => a + c.bytes_sent, 0);
  // the busy span: first start to last finish (a ramp longer than each test spreads the load thin)
  const span = Math.max(
    1,
    Math.max(...per.map((c) => c.finished_ms)) - Math.min(...per.map((c) => c.started_ms)),
  );
  return {
    protocol: o.protocol,
    server: peer.server,
    clients: o.clients,
    ramp_s: o.rampS,
    started_at: started.toISOString(),
    finished_at: new Date().toISOString(),
    wall_ms: wallMs,
    succeeded: ok.length,
    failed: per.length - ok.length,
    success_rate: round3(ok.length / per.length),
    errors,
    connect_ms: stats(per.map((c) => c.connect_ms)),
    ready_ms: stats(per.map((c) => c.ready_ms)),
    sum_download_mbps: sum('download_mbps'),
    sum_upload_mbps: sum('upload_mbps'),
    per_client_download_mbps: stats(ok.map((c) => c.download_mbps)),
    per_client_upload_mbps: stats(ok.map((c) => c.upload_mbps)),
    aggregate_download_mbps: round3((received * 8) / 1e3 / span),
    aggregate_upload_mbps: round3((sent * 8) / 1e3 / span),
    bytes_received: received,
    bytes_sent: sent,
    per_client: per,
  };
}

/** The report for a person: a few lines. */
export function loadText(r: LoadReport): string {
  const st = (s: Spread | null, unit: string) =>
    s
      ? `median ${s.median} ${unit}, p90 ${s.p90}, p99 ${s.p99}, min ${s.min}, max ${s.max}, stddev ${s.stddev}`
      : '–';
  const lines = [
    `Load      ${r.clients} ${r.protocol} client(s) against ${r.server}${r.ramp_s ? `, started over ${r.ramp_s} s` : ''}, ${round3(r.wall_ms / 1000)} s`,
    `Success   ${r.succeeded} of ${r.clients} (${round3(r.success_rate * 100)} %)${
      Object.keys(r.errors).length
        ? `; ${Object.entries(r.errors)
            .map(([k, n]) => `${k} × ${n}`)
            .join(', ')}`
        : ''
    }`,
    `Connect   ${st(r.connect_ms, 'ms')}`,
    `Ready     ${st(r.ready_ms, 'ms')}`,
  ];
  if (r.bytes_received)
    lines.push(
      `Download  ${r.aggregate_download_mbps} Mbit/s aggregate (${round3(r.bytes_received / 1e6)} MB), clients sum ${r.sum_download_mbps}; per client ${st(r.per_client_download_mbps, 'Mbit/s')}`,
    );
  if (r.bytes_sent)
    lines.push(
      `Upload    ${r.aggregate_upload_mbps} Mbit/s aggregate (${round3(r.bytes_sent / 1e6)} MB), clients sum ${r.sum_upload_mbps}; per client ${st(r.per_client_upload_mbps, 'Mbit/s')}`,
    );
  return lines.join('\n');
}
