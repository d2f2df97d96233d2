/**
 * ndt7's wire constants and measurement messages (ndt7 spec v0.11.0, m-lab/ndt-server
 * spec/ndt7-protocol.md; research/public-servers.md §1.1–1.2).
 */

export const DOWNLOAD_PATH = '/ndt/v7/download';
export const UPLOAD_PATH = '/ndt/v7/upload';
/** the subprotocol both sides must name in the upgrade; a server answers 400 without it */
export const SUBPROTOCOL = 'net.measurementlab.ndt.v7';

/** Binary messages start at 8 KiB and double while at most 1/16 of what was sent (the spec's appendix). */
export const MIN_MESSAGE = 1 << 13;
/** ndt-server's cap on scaled messages ("a good compromise between Go and JavaScript") */
export const MAX_SCALED_MESSAGE = 1 << 20;
export const SCALE_DIVISOR = 16;
/** what a receiver must accept at least (the spec's minimum maximum) */
export const MAX_MESSAGE = 1 << 24;
/** a measurement is a few hundred bytes of JSON; a longer text message is a hostile peer */
export const MAX_TEXT = 64 * 1024;
/** the test runs up to ten seconds from the completed handshake; past 15 s either side may kill it */
export const TEST_MS = 10_000;
export const HARD_LIMIT_MS = 15_000;
/** measurement messages about every 250 ms, spaced at random (Poisson), 25–625 ms as ndt-server does */
export const MEASURE_MEAN_MS = 250;
export const MEASURE_MIN_MS = 25;
export const MEASURE_MAX_MS = 625;
/** `early_exit=250`: the only value servers accept (MB) */
export const EARLY_EXIT_MB = 250;

/** Message sizes from MIN_MESSAGE up to `max`, each twice the one before. */
export function messageSizes(max = MAX_SCALED_MESSAGE): number[] {
  const out: number[] = [];
  for (let n = MIN_MESSAGE; n <= max; n *= 2) out.push(n);
  return out;
}

/** The next gap between measurement messages: exponential with the mean, clamped as ndt-server does. */
export function nextMeasureMs(random = Math.random): number {
  const x = -Math.log(1 - random()) * MEASURE_MEAN_MS;
  return Math.min(MEASURE_MAX_MS, Math.max(MEASURE_MIN_MS, x));
}

/** The spec's TCPInfo fields we read (µs and bytes); servers may send more, or fewer. */
export const TCPINFO_FIELDS = [
  'BusyTime',
  'BytesAcked',
  'BytesReceived',
  'BytesSent',
  'BytesRetrans',
  'ElapsedTime',
  'MinRTT',
  'RTT',
  'RTTVar',
  'RWndLimited',
  'SndBufLimited',
] as const;
export type TcpInfoField = (typeof TCPINFO_FIELDS)[number];
export type TcpInfo = Partial<Record<TcpInfoField, number>>;

export interface Measurement {
  AppInfo?: { ElapsedTime: number; NumBytes: number };
  ConnectionInfo?: { Client?: string; Server?: string; UUID?: string; StartTime?: string };
  Origin?: 'client' | 'server';
  Test?: 'download' | 'upload';
  TCPInfo?: TcpInfo;
}

/** Counters fit int53 (the spec); anything else (negative, fractional nonsense, a string) is dropped. */
function counter(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER
    ? v
    : undefined;
}

function text(v: unknown, max = 256): string | undefined {
  return typeof v === 'string' ? v.slice(0, max) : undefined;
}

/**
 * A measurement message as a peer sent it, reduced to the fields we read with their types checked.
 * Undefined for what is not a JSON object (clients must tolerate missing and extra fields, the spec
 * says; a message that is not JSON at all is ignored rather than failing the test).
 */
export function parseMeasurement(raw: Buffer | string): Measurement | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString());
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const m: Measurement = {};
  const app = o.AppInfo as Record<string, unknown> | undefined;
  if (app && typeof app === 'object') {
    const e = counter(app.ElapsedTime);
    const n = counter(app.NumBytes);
    if (e !== undefined && n !== undefined) m.AppInfo = { ElapsedTime: e, NumBytes: n };
  }
  const ci = o.ConnectionInfo as Record<string, unknown> | undefined;
  if (ci && typeof ci === 'object') {
    const c: NonNullable<Measurement['ConnectionInfo']> = {};
    for (const k of ['Client', 'Server', 'UUID', 'StartTime'] as const) {
      const t = text(ci[k]);
      if (t !== undefined) c[k] = t;
    }
    m.ConnectionInfo = c;
  }
  if (o.Origin === 'client' || o.Origin === 'server') m.Origin = o.Origin;
  if (o.Test === 'download' || o.Test === 'upload') m.Test = o.Test;
  const ti = o.TCPInfo as Record<string, unknown> | undefined;
  if (ti && typeof ti === 'object') {
    const t: TcpInfo = {};
    for (const k of TCPINFO_FIELDS) {
      const x = counter(ti[k]);
      if (x !== undefined) t[k] = x;
    }
    m.TCPInfo = t;
  }
  return m;
}
