import { ProbeError } from '../errors.js';

/**
 * The MQTT broker the Home Assistant Supervisor offers (specs/ha-addon.md §4): `GET /services/mqtt` with
 * the add-on's SUPERVISOR_TOKEN, answered in the `{result, data}` envelope. The add-on declares
 * `services: [mqtt:want]`, so the user never types broker credentials twice.
 */
export interface BrokerConfig {
  url: string;
  username?: string;
  password?: string;
  /** who provided it (the Mosquitto add-on's slug), for the log */
  provider?: string;
}

/** The Supervisor's address; BANDWIDTH_PROBE_SUPERVISOR_URL points tests at a local fake. */
export function supervisorUrl(env: NodeJS.ProcessEnv): string {
  return env.BANDWIDTH_PROBE_SUPERVISOR_URL ?? 'http://supervisor';
}

/** Checks the reply's shape; anything else is a coded error naming what was wrong. */
export function parseMqttService(body: unknown): BrokerConfig {
  const bad = (why: string) => new ProbeError('BP_ERR_SUPERVISOR', `/services/mqtt: ${why}`);
  if (!body || typeof body !== 'object') throw bad('the reply is not a JSON object');
  const env = body as { result?: unknown; message?: unknown; data?: unknown };
  if (env.result !== 'ok') throw bad(typeof env.message === 'string' ? env.message : 'result is not ok');
  const d = env.data as Record<string, unknown> | undefined;
  if (!d || typeof d !== 'object') throw bad('no data');
  if (typeof d.host !== 'string' || !/^[A-Za-z0-9.:_-]{1,253}$/.test(d.host)) throw bad('no valid host');
  // The validator takes an int, the docs show a string: accept both.
  const port = typeof d.port === 'string' ? Number(d.port) : d.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    throw bad(`port ${JSON.stringify(d.port)} is not a port`);
  const ssl = d.ssl === true || d.ssl === 'true';
  const host = d.host.includes(':') ? `[${d.host}]` : d.host;
  const provider = typeof d.app === 'string' ? d.app : typeof d.addon === 'string' ? d.addon : undefined;
  return {
    url: `${ssl ? 'mqtts' : 'mqtt'}://${host}:${port}`,
    ...(typeof d.username === 'string' && d.username ? { username: d.username } : {}),
    ...(typeof d.password === 'string' && d.password ? { password: d.password } : {}),
    ...(provider ? { provider } : {}),
  };
}

/**
 * One GET to the Supervisor with the add-on's token, its JSON body returned. Throws BP_ERR_SUPERVISOR
 * without a token, without an answer in `timeoutMs`, or without a JSON body.
 */
async function supervisorGet(env: NodeJS.ProcessEnv, path: string, timeoutMs: number): Promise<unknown> {
  const token = env.SUPERVISOR_TOKEN ?? env.HASSIO_TOKEN;
  if (!token) throw new ProbeError('BP_ERR_SUPERVISOR', 'not running as an add-on (no SUPERVISOR_TOKEN)');
  let res: Response;
  try {
    res = await fetch(`${supervisorUrl(env)}${path}`, {
      headers: { Authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new ProbeError('BP_ERR_SUPERVISOR', `no answer: ${(err as Error).message}`);
  }
  try {
    return await res.json();
  } catch {
    throw new ProbeError('BP_ERR_SUPERVISOR', `HTTP ${res.status} without a JSON body`);
  }
}

/** Asks the Supervisor; throws BP_ERR_SUPERVISOR when there is no broker or no answer. */
export async function supervisorMqtt(env: NodeJS.ProcessEnv, timeoutMs = 5000): Promise<BrokerConfig> {
  return parseMqttService(await supervisorGet(env, '/services/mqtt', timeoutMs));
}

/**
 * The add-on's own slug as the Supervisor knows it (`GET /addons/self/info`, e.g. `a0d7b954_bandwidth_probe`
 * with the repository's hash), for the device's link to the ingress panel. Throws BP_ERR_SUPERVISOR.
 */
export async function supervisorSelfSlug(env: NodeJS.ProcessEnv, timeoutMs = 3000): Promise<string> {
  const body = await supervisorGet(env, '/addons/self/info', timeoutMs);
  const slug = (body as { data?: { slug?: unknown } } | null)?.data?.slug;
  if (typeof slug !== 'string' || !/^[a-z0-9_]{1,64}$/.test(slug))
    throw new ProbeError('BP_ERR_SUPERVISOR', '/addons/self/info: no valid slug');
  return slug;
}
