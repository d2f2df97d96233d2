import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ProbeError } from '../errors.js';
import { postJson } from '../util/http.js';
import type { TlsOptions } from './transport.js';

/**
 * Client side of the RMBT control server API (specs/rmbt.md §6): settings (registration, client UUID),
 * testRequest (token and parameters), result (submission), testresult (read-back).
 */
export const CLIENT_NAME = 'RMBT';
export const SOFTWARE_VERSION = '0.1.0';

export interface ControlOptions {
  baseUrl: string;
  tls: TlsOptions;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface TestRequestReply {
  token: string;
  testUuid?: string;
  openTestUuid?: string;
  host: string;
  port: number;
  encryption: boolean;
  type: string;
  name?: string;
  duration: number;
  threads: number;
  pings: number;
  waitS: number;
  resultUrl?: string;
  clientIp?: string;
}

function url(o: ControlOptions, path: string): string {
  return `${o.baseUrl.replace(/\/+$/, '')}/${path}`;
}

/** Posts and checks the `error` array (empty on success); a terms complaint gets its own code. */
async function call(o: ControlOptions, path: string, body: unknown): Promise<Record<string, unknown>> {
  const { status, json } = await postJson(url(o, path), body, o);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ProbeError('BP_ERR_RMBT_CONTROL', `${path}: answer is not a JSON object`);
  }
  const obj = json as Record<string, unknown>;
  const errors = Array.isArray(obj.error) ? obj.error.map(String) : [];
  if (errors.length || status >= 400) {
    const text = errors.join('; ') || `HTTP ${status}`;
    throw new ProbeError(
      /terms|condition/i.test(text) ? 'BP_ERR_RMBT_TERMS' : 'BP_ERR_RMBT_CONTROL',
      `${path}: ${text}`,
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

function str(v: unknown, field: string, optional = false): string | undefined {
  if (typeof v === 'string' && v.length > 0 && v.length < 4096) return v;
  if (optional && (v === undefined || v === null)) return undefined;
  throw new ProbeError('BP_ERR_RMBT_CONTROL', `testRequest: ${field} missing or not a string`);
}

const base = { language: 'en', timezone: 'UTC', type: 'DESKTOP', softwareRevision: SOFTWARE_VERSION };

/** §6.1: register (or re-register) and return the client UUID the control server knows us by. */
export async function registerClient(
  o: ControlOptions,
  uuid: string | undefined,
  acceptTerms: boolean,
): Promise<string> {
  const reply = await call(o, 'settings', {
    ...base,
    name: CLIENT_NAME,
    softwareVersionName: SOFTWARE_VERSION,
    terms_and_conditions_accepted: acceptTerms,
    ...(uuid ? { uuid } : {}),
  });
  const settings = Array.isArray(reply.settings)
    ? (reply.settings[0] as Record<string, unknown> | undefined)
    : undefined;
  const got = settings?.uuid ?? uuid;
  if (typeof got !== 'string' || !/^[0-9a-fA-F-]{8,64}$/.test(got)) {
    throw new ProbeError('BP_ERR_RMBT_CONTROL', 'settings: no client uuid in the answer');
  }
  return got;
}

export type TransportWish = 'auto' | 'plain' | 'http' | 'ws';

/** §6.2: asks for a test; the capabilities say which server types we can use. */
export async function requestTest(
  o: ControlOptions,
  uuid: string,
  wish: TransportWish,
  extra: { threads?: number; ipVersion: 'any' | '4' | '6' },
): Promise<TestRequestReply> {
  const reply = await call(o, 'testRequest', {
    ...base,
    uuid,
    client: wish === 'ws' ? 'RMBTws' : CLIENT_NAME,
    version: '0.9',
    softwareVersion: SOFTWARE_VERSION,
    time: Date.now(),
    capabilities: { RMBThttp: wish === 'auto' || wish === 'http' },
    ...(extra.threads ? { num_threads: Math.min(9, extra.threads) } : {}),
    ...(extra.ipVersion !== 'any' ? { protocol_version: `ipv${extra.ipVersion}` } : {}),
  });
  const resultUrl = str(reply.result_url, 'result_url', true);
  const testUuid = str(reply.test_uuid, 'test_uuid', true);
  const openTestUuid = str(reply.open_test_uuid, 'open_test_uuid', true);
  const name = str(reply.test_server_name, 'test_server_name', true);
  const clientIp = str(reply.client_remote_ip, 'client_remote_ip', true);
  return {
    token: str(reply.test_token, 'test_token')!,
    host: str(reply.test_server_address, 'test_server_address')!,
    port: num(reply.test_server_port, 'test_server_port', 1, 65535),
    encryption: reply.test_server_encryption === true || reply.test_server_encryption === 'true',
    type: str(reply.test_server_type ?? 'RMBT', 'test_server_type')!,
    duration: num(reply.test_duration, 'test_duration', 1, 30),
    threads: num(reply.test_numthreads, 'test_numthreads', 1, 64),
    pings: num(reply.test_numpings ?? 10, 'test_numpings', 1, 200),
    waitS: num(reply.test_wait ?? 0, 'test_wait', 0, 600),
    ...(resultUrl ? { resultUrl } : {}),
    ...(testUuid ? { testUuid } : {}),
    ...(openTestUuid ? { openTestUuid } : {}),
    ...(name ? { name } : {}),
    ...(clientIp ? { clientIp } : {}),
  };
}

/** §6.3: submits a result body; the result URL from testRequest wins over `<base>/result`. */
export async function submitResult(
  o: ControlOptions,
  resultUrl: string | undefined,
  body: unknown,
): Promise<void> {
  if (resultUrl) {
    const { status, json } = await postJson(resultUrl, body, o);
    const errors = (json as { error?: unknown[] } | null)?.error;
    if (status >= 400 || (Array.isArray(errors) && errors.length)) {
      throw new ProbeError(
        'BP_ERR_RMBT_CONTROL',
        `result: ${Array.isArray(errors) && errors.length ? errors.join('; ') : `HTTP ${status}`}`,
      );
    }
    return;
  }
  await call(o, 'result', body);
}

/** Client UUIDs per control server, kept in one small JSON file (written atomically). */
export class UuidStore {
  constructor(private readonly path: string) {}

  private read(): Record<string, string> {
    try {
      const j = JSON.parse(readFileSync(this.path, 'utf8')) as unknown;
      return j && typeof j === 'object' && !Array.isArray(j) ? (j as Record<string, string>) : {};
    } catch {
      return {};
    }
  }

  get(controlUrl: string): string | undefined {
    const v = this.read()[controlUrl];
    return typeof v === 'string' ? v : undefined;
  }

  set(controlUrl: string, uuid: string): void {
    const all = { ...this.read(), [controlUrl]: uuid };
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
