import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ProbeError } from '../errors.js';
import { type PostOptions, postJson } from '../net/http.js';
import { VERSION } from '../version.js';

/**
 * Client side of the RMBT control server API (specs/rmbt.md §6): settings (registration, client UUID),
 * testRequest (token and parameters), result (submission). What each real deployment expects of these
 * bodies is in research/rmbt-deployments.md (finding numbers F1…F17 are cited below).
 */
export const CLIENT_NAME = 'RMBT';
/** Our own version, sent as softwareVersion and client_software_version. */
export const SOFTWARE_VERSION = VERSION;
/**
 * The protocol version a client registers with: "the lowest version it's compatible with", what every
 * reference client sends (F4: WS, the Java clients, DESK); the legacy server checks it exactly or as a
 * semver range (`0.1.0 || 0.3.0 || ^1.0.0` at RTR), which our own version would not pass.
 */
export const PROTOCOL_VERSION = '0.3';

/** The API flavour: open-rmbt's paths, or Specure's ONT platform (Nettfart) under `/mobile/…` (F2). */
export type ControlApi = 'open-rmbt' | 'specure';

export interface ControlOptions extends PostOptions {
  /** where the calls go (the configured control_url, or a family-pinned one from the settings answer) */
  baseUrl: string;
  api: ControlApi;
}

export interface TestRequestReply {
  token: string;
  testUuid?: string;
  openTestUuid?: string;
  host: string;
  port: number;
  encryption: boolean;
  type: string;
  /** the server named no type (the legacy server never does) and we took the one we asked for (F3) */
  typeAssumed: boolean;
  name?: string;
  duration: number;
  threads: number;
  pings: number;
  waitS: number;
  resultUrl?: string;
  clientIp?: string;
  loopUuid?: string;
}

export interface Registration {
  uuid: string;
  /** the terms version the answer advertises (sent back as accepted, F12) */
  termsVersion?: number;
  termsUrl?: string;
  /** family-pinned control servers from `settings[0].urls` (F1, as RTR's web and desktop clients use them) */
  controlV4?: string;
  controlV6?: string;
}

function url(o: ControlOptions, path: string): string {
  const base = o.baseUrl.replace(/\/+$/, '');
  // Specure keeps the measurement API under /mobile (SPEC-CS URIConstants); a base that already ends
  // in /mobile is taken as it is.
  const prefix = o.api === 'specure' && !/\/mobile$/.test(base) ? '/mobile' : '';
  return `${base}${prefix}/${path}`;
}

/** Posts and checks the `error` array (empty on success); a terms complaint gets its own code. */
async function call(o: ControlOptions, target: string, what: string, body: unknown) {
  const { status, json } = await postJson(target, body, o);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ProbeError('BP_ERR_RMBT_CONTROL', `${what}: answer is not a JSON object`);
  }
  const obj = json as Record<string, unknown>;
  const errors = Array.isArray(obj.error) ? obj.error.map(String) : [];
  if (errors.length || status >= 400) {
    const text = errors.join('; ') || `HTTP ${status}`;
    throw new ProbeError(
      /terms|condition/i.test(text) ? 'BP_ERR_RMBT_TERMS' : 'BP_ERR_RMBT_CONTROL',
      `${what}: ${text}`,
    );
  }
  return obj;
}

/** Numbers that the real control server sends as strings (§7 item 7). */
function num(v: unknown, field: string, min: number, max: number): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) {
    throw new ProbeError(
      'BP_ERR_RMBT_CONTROL',
      `testRequest: ${field} is ${JSON.stringify(v)}, expected ${min}..${max}`,
    );
  }
  return n;
}

/** An optional field that is absent, null or "" is absent (F17: one empty result_url must not abort a test). */
function optStr(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 && v.length < 4096 ? v : undefined;
}

function str(v: unknown, field: string): string {
  const s = optStr(v);
  if (s === undefined)
    throw new ProbeError('BP_ERR_RMBT_CONTROL', `testRequest: ${field} missing or not a string`);
  return s;
}

/** The machine's IANA zone (CTRL stores client_time in it, F13); UTC where the runtime knows none. */
export function timeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

function base() {
  return { language: 'en', timezone: timeZone(), type: 'DESKTOP', softwareRevision: SOFTWARE_VERSION };
}

/**
 * A family-pinned control server from the settings answer as a base URL. RTR's web client prefixes
 * `https://` to what it gets (open-rmbt-website test.service.ts getControlProxy), so a bare host keeps
 * our URL's scheme, port and path with only the host changed.
 */
export function pinnedBase(controlUrl: string, pinned: string | undefined): string | undefined {
  if (!pinned) return undefined;
  try {
    if (/^https?:\/\//i.test(pinned)) return new URL(pinned).toString().replace(/\/+$/, '');
    const u = new URL(controlUrl);
    const [host, ...rest] = pinned.split('/');
    u.host = host!;
    if (rest.length) u.pathname = `/${rest.join('/')}`;
    return u.toString().replace(/\/+$/, '');
  } catch {
    return undefined;
  }
}

/**
 * §6.1: register (or re-register) and return the client UUID the control server knows us by. Without
 * accepted terms CTRL and the legacy server create no client and answer without a uuid, not with an
 * error (F12): that is reported as BP_ERR_RMBT_TERMS with the terms URL. With accepted terms the
 * advertised terms version is sent back, as the official clients do; on the first registration it is
 * learnt from the answer and sent in a second call.
 */
export async function registerClient(
  o: ControlOptions,
  known: { uuid?: string; termsVersion?: number },
  acceptTerms: boolean,
): Promise<Registration> {
  const post = async (sentUuid: string | undefined, termsVersion: number | undefined) => {
    const reply = await call(o, url(o, 'settings'), 'settings', {
      ...base(),
      name: CLIENT_NAME,
      softwareVersionName: SOFTWARE_VERSION,
      terms_and_conditions_accepted: acceptTerms,
      ...(acceptTerms && termsVersion !== undefined
        ? { terms_and_conditions_accepted_version: termsVersion }
        : {}),
      ...(sentUuid ? { uuid: sentUuid } : {}),
    });
    const settings = Array.isArray(reply.settings)
      ? (reply.settings[0] as Record<string, unknown> | undefined)
      : undefined;
    const terms = (settings?.terms_and_conditions ?? {}) as Record<string, unknown>;
    const urls = (settings?.urls ?? {}) as Record<string, unknown>;
    const version = Number(terms.version);
    const controlV4 = optStr(urls.control_ipv4_only);
    const controlV6 = optStr(urls.control_ipv6_only);
    const termsUrl = optStr(terms.url);
    const uuid = optStr(settings?.uuid);
    return {
      ...(uuid ? { uuid } : {}),
      ...(Number.isInteger(version) && version > 0 ? { termsVersion: version } : {}),
      ...(termsUrl ? { termsUrl } : {}),
      ...(controlV4 ? { controlV4 } : {}),
      ...(controlV6 ? { controlV6 } : {}),
    };
  };
  let got: Partial<Registration> = await post(known.uuid, known.termsVersion);
  if (acceptTerms && got.termsVersion !== undefined && got.termsVersion !== known.termsVersion) {
    got = { ...got, ...(await post(got.uuid ?? known.uuid, got.termsVersion)) };
  }
  const uuid = got.uuid ?? known.uuid;
  if (!uuid && !acceptTerms) {
    throw new ProbeError(
      'BP_ERR_RMBT_TERMS',
      `settings: the control server registers no client before its terms are accepted${got.termsUrl ? `; read ${got.termsUrl}` : ''}, then set accept_terms`,
    );
  }
  if (!uuid || !/^[0-9a-fA-F-]{8,64}$/.test(uuid)) {
    throw new ProbeError('BP_ERR_RMBT_CONTROL', 'settings: no client uuid in the answer');
  }
  return { ...got, uuid };
}

export type TransportWish = 'auto' | 'plain' | 'http' | 'ws';

/** Loop mode for scheduled runs (F8), as RTR's clients send it: the server mints loop_uuid on the first test. */
export interface LoopInfo {
  loopUuid?: string;
  counter: number;
  /** minutes between runs */
  maxDelayMin: number;
}

/** The server type a wish asks for, and the one to assume when the answer names none (F3). */
function requestedType(wish: TransportWish): string {
  if (wish === 'ws') return 'RMBTws';
  if (wish === 'http') return 'RMBThttp';
  // plain and auto: `RMBT`, which the client tells apart (server-first or upgrade) by listening first.
  return 'RMBT';
}

/** §6.2: asks for a test; the capabilities say which server types we can use. */
export async function requestTest(
  o: ControlOptions,
  uuid: string,
  wish: TransportWish,
  extra: { threads?: number; ipVersion: 'any' | '4' | '6'; loop?: LoopInfo },
): Promise<TestRequestReply> {
  const loop = extra.loop;
  const reply = await call(o, url(o, 'testRequest'), 'testRequest', {
    ...base(),
    uuid,
    client: wish === 'ws' ? 'RMBTws' : CLIENT_NAME,
    version: PROTOCOL_VERSION,
    softwareVersion: SOFTWARE_VERSION,
    time: Date.now(),
    // PYC and RTR's CLI send capabilities only when not asking for WebSocket (research §6).
    ...(wish === 'ws' ? {} : { capabilities: { RMBThttp: wish === 'auto' || wish === 'http' } }),
    ...(extra.threads ? { num_threads: Math.min(9, extra.threads) } : {}),
    // Only ever sent with the control connection pinned to the same family (F1).
    ...(extra.ipVersion !== 'any' ? { protocol_version: `ipv${extra.ipVersion}` } : {}),
    ...(loop
      ? {
          user_loop_mode: true,
          measurement_type_flag: 'loop_active',
          loopmode_info: {
            max_delay: loop.maxDelayMin,
            max_movement: 0,
            max_tests: 0,
            test_counter: loop.counter,
            loop_uuid: loop.loopUuid ?? null,
          },
        }
      : {}),
  });
  const given = optStr(reply.test_server_type);
  const resultUrl = optStr(reply.result_url);
  const testUuid = optStr(reply.test_uuid);
  const openTestUuid = optStr(reply.open_test_uuid);
  // A server name is shown and published (HA state, CSV): bounded like any text from the network.
  const name = optStr(reply.test_server_name)?.slice(0, 128);
  const clientIp = optStr(reply.client_remote_ip);
  const loopUuid = optStr(reply.loop_uuid);
  return {
    token: str(reply.test_token, 'test_token'),
    host: str(reply.test_server_address, 'test_server_address'),
    port: num(reply.test_server_port, 'test_server_port', 1, 65535),
    encryption: reply.test_server_encryption === true || reply.test_server_encryption === 'true',
    type: given ?? requestedType(wish),
    typeAssumed: given === undefined,
    duration: num(reply.test_duration, 'test_duration', 1, 30),
    threads: num(reply.test_numthreads, 'test_numthreads', 1, 64),
    pings: num(reply.test_numpings || 10, 'test_numpings', 1, 200),
    waitS: num(reply.test_wait || 0, 'test_wait', 0, 600),
    ...(resultUrl ? { resultUrl } : {}),
    ...(testUuid ? { testUuid } : {}),
    ...(openTestUuid ? { openTestUuid } : {}),
    ...(name ? { name } : {}),
    ...(clientIp ? { clientIp } : {}),
    ...(loopUuid ? { loopUuid } : {}),
  };
}

/**
 * Where the result goes (F17): the testRequest answer's result_url only when it is on the control
 * server's own scheme and host (the configured one or the family-pinned one), or when `trust` says so;
 * otherwise `<base>/result`, as RTR's web, CLI and Python clients always do. CTRL derives result_url
 * from its own configuration, whose default is a loopback URL.
 */
export function resultTarget(
  o: ControlOptions,
  configuredUrl: string,
  resultUrl: string | undefined,
  trust: boolean,
): string {
  const fallback = url(o, 'result');
  if (!resultUrl) return fallback;
  let given: URL;
  try {
    given = new URL(resultUrl);
  } catch {
    return fallback;
  }
  if (given.protocol !== 'http:' && given.protocol !== 'https:') return fallback;
  if (trust) return resultUrl;
  const own = [configuredUrl, o.baseUrl].map((u) => new URL(u).origin);
  return own.includes(given.origin) ? resultUrl : fallback;
}

/** §6.3: submits a result body. */
export async function submitResult(o: ControlOptions, target: string, body: unknown): Promise<void> {
  await call(o, target, 'result', body);
}

/** What the probe keeps per control server: the client uuid, the accepted terms, loop state per target. */
export interface ControlRecord {
  uuid?: string;
  termsVersion?: number;
  loops?: Record<string, { loopUuid?: string; counter: number }>;
}

/**
 * Control-server state, one small JSON file keyed by control URL (written atomically). Files written
 * before loop mode existed map a URL to the uuid string; they are read as `{ uuid }`.
 */
export class ControlStateStore {
  constructor(private readonly path: string) {}

  private read(): Record<string, ControlRecord | string> {
    try {
      const j = JSON.parse(readFileSync(this.path, 'utf8')) as unknown;
      return j && typeof j === 'object' && !Array.isArray(j) ? (j as Record<string, ControlRecord>) : {};
    } catch {
      return {};
    }
  }

  get(controlUrl: string): ControlRecord {
    const v = this.read()[controlUrl];
    if (typeof v === 'string') return { uuid: v };
    return v && typeof v === 'object' ? v : {};
  }

  update(controlUrl: string, patch: (r: ControlRecord) => ControlRecord): void {
    const all = this.read();
    all[controlUrl] = patch(this.get(controlUrl));
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      const tmp = `${this.path}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(all, null, 2)}\n`);
      renameSync(tmp, this.path);
    } catch (err) {
      throw new ProbeError('BP_ERR_STORE', `${this.path}: ${(err as Error).message}`);
    }
  }
}
