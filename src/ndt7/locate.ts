import { bounded, ProbeError, toProbeError } from '../errors.js';
import { VERSION } from '../version.js';
import { DOWNLOAD_PATH, UPLOAD_PATH } from './messages.js';

/**
 * M-Lab's Locate API v2 (research/public-servers.md §1.4): `GET …/v2/nearest/ndt/ndt7` answers up to four
 * servers nearest the caller, each with ready URLs that carry an access token valid for one minute.
 * So Locate is asked right before each run, and the URLs are used at once, in order, the next one when a
 * server refuses. Rate limits are per IP and User-Agent: our own User-Agent, and the `client_*` query
 * parameters Locate copies into the measurement URLs, name us to M-Lab.
 */

export interface LocatedServer {
  /** M-Lab's machine name (e.g. mlab3-lga05.mlab-oti.measurement-lab.org) */
  machine: string;
  city?: string;
  country?: string;
  /** the measurement URLs for the scheme asked for, tokens included */
  download: string;
  upload: string;
}

/** Longest Locate answer read (four servers are about 4 KB): a larger one is not Locate's. */
const MAX_BODY = 256 * 1024;

export const USER_AGENT = `bandwidth-probe/${VERSION}`;

/** The client_* parameters the ndt7 spec asks clients to send (Locate copies them into the URLs). */
export function clientParams(): URLSearchParams {
  return new URLSearchParams({ client_name: 'bandwidth-probe', client_version: VERSION });
}

async function readBounded(res: Response): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return '';
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > MAX_BODY) {
      await reader.cancel();
      throw new ProbeError('BP_ERR_NDT7_LOCATE', `Locate answered more than ${MAX_BODY} bytes`);
    }
    parts.push(value);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** Asks Locate for the nearest servers; coded errors for busy (204, 429), down, 5xx and garbage. */
export async function locate(
  locateUrl: string,
  scheme: 'ws' | 'wss',
  o: { timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<LocatedServer[]> {
  const url = new URL(locateUrl);
  for (const [k, v] of clientParams()) url.searchParams.set(k, v);
  const signals = [AbortSignal.timeout(o.timeoutMs), ...(o.signal ? [o.signal] : [])];
  let res: Response;
  try {
    res = await fetch(url, {
      headers: { 'user-agent': USER_AGENT, accept: 'application/json' },
      redirect: 'follow',
      signal: AbortSignal.any(signals),
    });
  } catch (err) {
    if (o.signal?.aborted) throw new ProbeError('BP_ERR_ABORTED');
    const cause = (err as { cause?: Error }).cause;
    const why =
      (err as Error).name === 'TimeoutError'
        ? `no answer within ${o.timeoutMs} ms`
        : (cause?.message ?? (err as Error).message);
    throw new ProbeError(
      'BP_ERR_NDT7_LOCATE',
      `Locate ${url.host} could not be reached: ${bounded(why, 200)}`,
    );
  }
  let body: string;
  try {
    body = await readBounded(res);
  } catch (err) {
    throw err instanceof ProbeError && err.code === 'BP_ERR_NDT7_LOCATE'
      ? err
      : new ProbeError('BP_ERR_NDT7_LOCATE', `Locate's answer broke off: ${toProbeError(err).message}`);
  }
  // 204: no capacity (the spec); 429: too many requests from this address (Locate v2's rate limit)
  if (res.status === 204 || res.status === 429) {
    throw new ProbeError(
      'BP_ERR_NDT7_BUSY',
      res.status === 204
        ? 'Locate has no server with capacity now (204)'
        : `Locate refused: too many requests from this address (429${problemTitle(body)})`,
    );
  }
  if (res.status !== 200)
    throw new ProbeError('BP_ERR_NDT7_LOCATE', `Locate answered HTTP ${res.status}${problemTitle(body)}`);
  return parseLocate(body, scheme);
}

/** The RFC 7807 title Locate sends with an error, when there is one. */
function problemTitle(body: string): string {
  try {
    const t = (JSON.parse(body) as { error?: { title?: unknown } }).error?.title;
    return typeof t === 'string' ? `: ${bounded(t, 200)}` : '';
  } catch {
    return '';
  }
}

/** The servers of a Locate v2 answer that offer both test URLs for `scheme`, in Locate's order. */
export function parseLocate(body: string, scheme: 'ws' | 'wss'): LocatedServer[] {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    throw new ProbeError(
      'BP_ERR_NDT7_LOCATE',
      `Locate answered something that is not JSON: ${JSON.stringify(bounded(body, 80))}`,
    );
  }
  const results = (v as { results?: unknown } | null)?.results;
  if (!Array.isArray(results))
    throw new ProbeError('BP_ERR_NDT7_LOCATE', 'Locate answered JSON without a results list');
  const out: LocatedServer[] = [];
  for (const r of results.slice(0, 16)) {
    if (!r || typeof r !== 'object') continue;
    const o = r as {
      machine?: unknown;
      location?: { city?: unknown; country?: unknown };
      urls?: Record<string, unknown>;
    };
    const dl = o.urls?.[`${scheme}://${DOWNLOAD_PATH}`];
    const ul = o.urls?.[`${scheme}://${UPLOAD_PATH}`];
    if (typeof dl !== 'string' || typeof ul !== 'string') continue;
    if (!isTestUrl(dl, scheme, DOWNLOAD_PATH) || !isTestUrl(ul, scheme, UPLOAD_PATH)) continue;
    out.push({
      machine: typeof o.machine === 'string' ? bounded(o.machine, 128) : new URL(dl).hostname,
      ...(typeof o.location?.city === 'string' ? { city: bounded(o.location.city, 64) } : {}),
      ...(typeof o.location?.country === 'string' ? { country: bounded(o.location.country, 8) } : {}),
      download: dl,
      upload: ul,
    });
  }
  if (!out.length)
    throw new ProbeError('BP_ERR_NDT7_LOCATE', `Locate listed no server with ${scheme} test URLs`);
  return out;
}

function isTestUrl(s: string, scheme: string, path: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === `${scheme}:` && u.pathname === path && s.length <= 4096;
  } catch {
    return false;
  }
}
