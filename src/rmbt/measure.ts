import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GeneralSettings, RmbtSettings } from '../config/schema.js';
import type { Engine } from '../engine/types.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { markFailed, type RunResult, startResult } from '../measure/result.js';
import { newRaw, type RmbtEvent, type RmbtTestParams, runRmbtTest } from './client.js';
import {
  type ControlOptions,
  registerClient,
  requestTest,
  submitResult,
  type TransportWish,
  UuidStore,
} from './control.js';
import { resultBody, rmbtFigures } from './report.js';
import { makeToken } from './token.js';
import { type Transport, transportFor, usesTls } from './transport.js';

export interface MeasureContext {
  engine: Engine;
  general: GeneralSettings;
  log?: Logger;
  signal?: AbortSignal;
  onEvent?: (e: RmbtEvent) => void;
  targetId?: string;
}

/** Splits `host:port` / `[v6]:port` / `host`. */
export function splitHostPort(s: string): { host: string; port?: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s);
  if (!m) return { host: s };
  return m[2] ? { host: m[1]!, port: Number(m[2]) } : { host: m[1]! };
}

function wishFor(t: RmbtSettings['transport']): TransportWish {
  if (t === 'plain' || t === 'tls') return 'plain';
  if (t === 'http' || t === 'https') return 'http';
  if (t === 'ws' || t === 'wss') return 'ws';
  return 'auto';
}

interface Plan {
  params: RmbtTestParams;
  server: RunResult['server'];
  submit?: (raw: ReturnType<typeof newRaw>, result: RunResult) => Promise<void>;
  rmbt?: RunResult['rmbt'];
}

/** Control-server mode: register, ask for a test, wait test_wait, then go (§6). */
async function planControl(s: RmbtSettings, ctx: MeasureContext, ctl: ControlOptions): Promise<Plan> {
  const store = new UuidStore(s.client_uuid_file ?? join(ctx.general.data_dir, 'rmbt-client-uuid.json'));
  const known = store.get(s.control_url!);
  const uuid = await registerClient(ctl, known, s.accept_terms);
  if (uuid !== known) store.set(s.control_url!, uuid);
  const t = await requestTest(ctl, uuid, wishFor(s.transport), {
    ...(s.threads ? { threads: s.threads } : {}),
    ipVersion: s.ip_version,
  });
  const transport = transportFor(t.type, t.encryption);
  const port = s.port ?? t.port;
  if (t.waitS > 0) {
    ctx.log?.info({ wait_s: t.waitS }, 'control server asked to wait before the test');
    await new Promise((r) => setTimeout(r, t.waitS * 1000));
  }
  return {
    params: baseParams(s, { host: t.host, port, transport }, t.token, t.duration, t.threads, t.pings),
    server: { host: t.host, port, transport, encryption: t.encryption, ...(t.name ? { name: t.name } : {}) },
    rmbt: {
      submitted: false,
      client_uuid: uuid,
      ...(t.testUuid ? { test_uuid: t.testUuid } : {}),
      ...(t.openTestUuid ? { open_test_uuid: t.openTestUuid } : {}),
    },
    ...(s.submit_results
      ? {
          submit: (raw, result) =>
            submitResult(
              ctl,
              t.resultUrl,
              resultBody(raw, result, {
                token: t.token,
                clientUuid: uuid,
                port,
                encryption: t.encryption,
                ...(t.testUuid ? { testUuid: t.testUuid } : {}),
              }),
            ),
        }
      : {}),
  };
}

/** Direct mode: no control server; we sign our own token with the shared key, as the reference C client does. */
async function planDirect(s: RmbtSettings): Promise<Plan> {
  const hp = splitHostPort(s.server!);
  const port = s.port ?? hp.port;
  if (!port)
    throw new ProbeError('BP_ERR_CONFIG', `server ${s.server} has no port; give host:port or set port`);
  const transport: Transport = s.transport === 'auto' ? 'https' : s.transport;
  return {
    params: baseParams(
      s,
      { host: hp.host, port, transport },
      makeToken(s.key!),
      s.duration,
      s.threads || 3,
      s.pings,
    ),
    server: { host: hp.host, port, transport, encryption: usesTls(transport) },
  };
}

function baseParams(
  s: RmbtSettings,
  where: { host: string; port: number; transport: Transport },
  token: string,
  duration: number,
  maxThreads: number,
  pings: number,
): RmbtTestParams {
  return {
    connect: {
      ...where,
      ipVersion: s.ip_version,
      ...(s.source_address ? { source: s.source_address } : {}),
      tls: { insecure: s.tls_insecure, ...(s.tls_ca ? { ca: readCa(s.tls_ca) } : {}) },
      timeoutMs: s.io_timeout * 1000,
    },
    token,
    duration,
    maxThreads,
    ...(s.threads ? { forceThreads: s.threads } : {}),
    pings: Math.max(pings, s.pings),
    pingMinS: s.ping_duration,
    pretestS: s.pretest_duration,
    ioTimeoutMs: s.io_timeout * 1000,
  };
}

function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ProbeError('BP_ERR_CONFIG', `tls_ca ${path}: ${(err as Error).message}`);
  }
}

/**
 * One RMBT measurement into the common result model. Never throws: failures come back as a result with
 * status failed/aborted, a coded error, and whatever phases completed before it.
 */
export async function measureRmbt(s: RmbtSettings, ctx: MeasureContext): Promise<RunResult> {
  const started = new Date();
  const cpu0 = process.cpuUsage();
  const raw = newRaw();
  const result = startResult(
    { id: ctx.targetId ?? 'rmbt', kind: 'rmbt' },
    { host: s.server ?? s.control_url ?? '', port: 0 },
    ctx.engine.kind,
    started,
  );
  let plan: Plan | undefined;
  try {
    if (!s.control_url && !(s.server && s.key)) {
      throw new ProbeError('BP_ERR_CONFIG', 'set control_url, or server and key for direct mode');
    }
    const ctl: ControlOptions | undefined = s.control_url
      ? {
          baseUrl: s.control_url,
          tls: { insecure: s.tls_insecure, ...(s.tls_ca ? { ca: readCa(s.tls_ca) } : {}) },
          timeoutMs: s.io_timeout * 1000,
          ...(ctx.signal ? { signal: ctx.signal } : {}),
        }
      : undefined;
    plan = ctl ? await planControl(s, ctx, ctl) : await planDirect(s);
    result.server = plan.server;
    if (plan.rmbt) result.rmbt = plan.rmbt;
    await runRmbtTest(
      plan.params,
      {
        engine: ctx.engine,
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        ...(ctx.onEvent ? { onEvent: ctx.onEvent } : {}),
        ...(ctx.log ? { log: ctx.log } : {}),
      },
      raw,
    );
  } catch (err) {
    markFailed(result, err, Boolean(ctx.signal?.aborted));
  }
  Object.assign(result, rmbtFigures(raw));
  if (raw.version) result.server.version = raw.version;
  // The engine that really moved the bytes: native only if every bulk phase ran natively.
  result.engine = raw.engines.size === 0 ? ctx.engine.kind : raw.engines.has('js') ? 'js' : 'native';
  if (ctx.engine.kind === 'native' && result.engine === 'js') {
    ctx.log?.info(
      { transport: result.server.transport },
      'TLS streams run on the js engine (the native loop moves plain TCP only)',
    );
  }
  if (raw.singleThreadFallback) result.flags.push('single_thread_fallback');
  const cpu = process.cpuUsage(cpu0);
  const wallMs = Date.now() - started.getTime();
  // percent of one core, to 0.1 % (cpuUsage is in µs)
  result.cpu.local_percent =
    wallMs > 0 ? Math.round(((cpu.user + cpu.system) / 1000 / wallMs) * 1000) / 10 : 0;
  result.finished_at = new Date().toISOString();
  if (plan?.submit && result.status !== 'aborted' && result.rmbt) {
    try {
      await plan.submit(raw, result);
      result.rmbt.submitted = true;
    } catch (err) {
      result.rmbt.submit_error = toProbeError(err).message;
      ctx.log?.warn({ err: result.rmbt.submit_error }, 'result submission failed');
    }
  }
  return result;
}
