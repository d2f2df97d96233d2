import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { GeneralSettings } from '../config/schema.js';
import type { Engine } from '../engine/types.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { markFailed, type RunResult, startResult } from '../measure/result.js';
import { splitHostPort } from '../net/hostport.js';
import type { HttpExchange } from '../net/http.js';
import { accessNetwork, interfaceOf, NETWORK_TYPE_CODE } from '../util/netif.js';
import { newRaw, type RmbtEvent, type RmbtTestParams, runRmbtTest } from './client.js';
import {
  type ControlOptions,
  ControlStateStore,
  type LoopInfo,
  pinnedBase,
  registerClient,
  requestTest,
  resultTarget,
  submitResult,
  type TransportWish,
} from './control.js';
import { resultBody, rmbtFigures } from './report.js';
import type { RmbtSettings } from './settings.js';
import { makeToken } from './token.js';
import { resolveSource, type Transport, transportFor, usesTls } from './transport.js';

export interface MeasureContext {
  engine: Engine;
  general: GeneralSettings;
  log?: Logger;
  signal?: AbortSignal;
  onEvent?: (e: RmbtEvent) => void;
  targetId?: string;
  /**
   * The run is automated (a schedule or the service's start), at about this many minutes apart: the
   * control server is told it is a loop-mode test (F8). Absent for runs a person started.
   */
  automated?: { everyMin: number };
  /**
   * Seconds of download and of upload instead of the control server's (`measure rmbt --duration` with
   * a control server). The measurement server may refuse a longer GETTIME than it allows:
   * the run then fails and says so.
   */
  durationOverride?: number;
  /** each control-server request and answer (`--debug-control`), unmasked: the callee masks */
  onControl?: (e: HttpExchange) => void;
}

/** The longest `test_wait` we honour (seconds). */
export const MAX_TEST_WAIT_S = 30;

/** Waits `ms`, or until `signal` aborts (then throws BP_ERR_ABORTED). */
function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = () =>
      new ProbeError('BP_ERR_ABORTED', 'aborted while waiting for the test slot (test_wait)');
    if (signal?.aborted) return reject(aborted());
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Splits `host:port` / `[v6]:port` / `host`. */
function wishFor(t: RmbtSettings['transport']): TransportWish {
  if (t === 'plain' || t === 'tls') return 'plain';
  if (t === 'http' || t === 'https') return 'http';
  if (t === 'ws' || t === 'wss') return 'ws';
  return 'auto';
}

/** 4 or 6 when a URL's host is an IP address, else 0. */
function hostFamily(url: string): number {
  return net.isIP(new URL(url).hostname.replace(/^\[|\]$/g, ''));
}

/** `Name: value; Name2: value` (the settings pattern checked the shape already). */
export function parseHeaders(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (text ?? '').split(';')) {
    const i = part.indexOf(':');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

interface Plan {
  params: RmbtTestParams;
  server: RunResult['server'];
  submit?: (raw: ReturnType<typeof newRaw>, result: RunResult) => Promise<void>;
  rmbt?: RunResult['rmbt'];
}

/**
 * Control-server mode (§6): register, ask for a test, wait test_wait, then go. Every control call goes
 * over the measurement's IP family and source address, and with ip_version 4 or 6 to the family-pinned
 * control server the settings answer names, so the token (v2: bound to the address the control server
 * saw) and the operator's record (public IP, provider) belong to the measured path (F1/F9).
 */
async function planControl(s: RmbtSettings, ctx: MeasureContext, ctl: ControlOptions): Promise<Plan> {
  const controlUrl = s.control_url!;
  const state = new ControlStateStore(
    s.client_uuid_file ?? join(ctx.general.data_dir, 'rmbt-client-uuid.json'),
  );
  const known = state.get(controlUrl);
  const reg = await registerClient(ctl, known, s.accept_terms);
  if (reg.uuid !== known.uuid || reg.termsVersion !== known.termsVersion) {
    state.update(controlUrl, (r) => ({
      ...r,
      uuid: reg.uuid,
      ...(reg.termsVersion !== undefined && s.accept_terms ? { termsVersion: reg.termsVersion } : {}),
    }));
  }
  const pinned =
    s.ip_version === '4'
      ? pinnedBase(controlUrl, reg.controlV4)
      : s.ip_version === '6'
        ? pinnedBase(controlUrl, reg.controlV6)
        : undefined;
  const ctlTest: ControlOptions = pinned ? { ...ctl, baseUrl: pinned } : ctl;
  const literal = hostFamily(ctlTest.baseUrl);
  if (s.ip_version !== 'any' && literal && literal !== Number(s.ip_version)) {
    // The token would be bound to this address while the measurement runs over the other family (F1).
    throw new ProbeError(
      'BP_ERR_CONFIG',
      `control_url ${ctlTest.baseUrl} is an IPv${literal} address but ip_version is ${s.ip_version}, and the control server names no IPv${s.ip_version}-only URL; use a host name or an IPv${s.ip_version} address`,
    );
  }
  if (pinned) ctx.log?.debug({ control: pinned }, `IPv${s.ip_version}-only control server`);
  const loopKey = ctx.targetId ?? 'rmbt';
  const loop: LoopInfo | undefined =
    ctx.automated && s.loop_mode
      ? {
          counter: (known.loops?.[loopKey]?.counter ?? 0) + 1,
          maxDelayMin: Math.max(1, Math.round(ctx.automated.everyMin)),
          ...(known.loops?.[loopKey]?.loopUuid ? { loopUuid: known.loops[loopKey].loopUuid } : {}),
        }
      : undefined;
  const t = await requestTest(ctlTest, reg.uuid, wishFor(s.transport), {
    ...(s.threads ? { threads: s.threads } : {}),
    ipVersion: s.ip_version,
    ...(loop ? { loop } : {}),
  });
  const loopUuid = t.loopUuid ?? loop?.loopUuid;
  if (loop) {
    state.update(controlUrl, (r) => ({
      ...r,
      loops: { ...r.loops, [loopKey]: { counter: loop.counter, ...(loopUuid ? { loopUuid } : {}) } },
    }));
  }
  if (s.threads > t.threads) {
    // baseParams clamps forced threads to the grant (F11): operators see both figures, so say so.
    ctx.log?.warn(
      { threads: s.threads, granted: t.threads },
      `threads ${s.threads} is more than the control server grants; measuring with ${t.threads}`,
    );
  }
  const transport = transportFor(t.type, t.encryption);
  const port = s.port ?? t.port;
  if (t.typeAssumed)
    ctx.log?.debug({ type: t.type }, 'the control server named no server type; using the one asked for');
  if (t.waitS > 0) {
    // Capped, and ended by an abort (SIGTERM, run_timeout): a hostile control server's `test_wait: 600`
    // held a run past both. Open-RMBT servers send 0 or a few seconds.
    const waitS = Math.min(t.waitS, MAX_TEST_WAIT_S);
    ctx.log?.[waitS < t.waitS ? 'warn' : 'info'](
      { wait_s: t.waitS, waiting_s: waitS },
      waitS < t.waitS
        ? `control server asked to wait ${t.waitS} s before the test; waiting ${MAX_TEST_WAIT_S} s at most`
        : 'control server asked to wait before the test',
    );
    await abortableSleep(waitS * 1000, ctx.signal);
  }
  const target = resultTarget(ctlTest, controlUrl, t.resultUrl, s.trust_result_url);
  if (t.resultUrl && target !== t.resultUrl)
    ctx.log?.warn(
      { result_url: t.resultUrl, used: target },
      'result_url is not on the control server; posting to the control server instead (trust_result_url)',
    );
  return {
    params: baseParams(
      s,
      // `RMBT` is server-first to RMBTD and the legacy server but upgrade-only to the Rust server (F3).
      { host: t.host, port, transport, ...(t.type === 'RMBT' ? { detectUpgrade: true } : {}) },
      t.token,
      ctx.durationOverride ?? t.duration,
      t.threads,
      t.pings,
    ),
    server: { host: t.host, port, transport, encryption: t.encryption, ...(t.name ? { name: t.name } : {}) },
    rmbt: {
      submitted: false,
      client_uuid: reg.uuid,
      control_url: ctlTest.baseUrl,
      ...(t.testUuid ? { test_uuid: t.testUuid } : {}),
      ...(t.openTestUuid ? { open_test_uuid: t.openTestUuid } : {}),
      ...(t.clientIp ? { client_ip: t.clientIp } : {}),
      ...(loop ? { loop_counter: loop.counter } : {}),
      ...(loopUuid ? { loop_uuid: loopUuid } : {}),
      ...(ctx.durationOverride !== undefined && ctx.durationOverride !== t.duration
        ? { control_duration_s: t.duration, duration_s: ctx.durationOverride }
        : {}),
    },
    ...(s.submit_results
      ? {
          submit: async (raw, result) => {
            const networkType =
              NETWORK_TYPE_CODE[
                s.network_type === 'auto' ? accessNetwork(interfaceOf(raw.localIp)) : s.network_type
              ];
            result.rmbt!.network_type = networkType;
            result.rmbt!.result_url = target;
            await submitResult(
              ctlTest,
              target,
              resultBody(raw, result, {
                token: t.token,
                clientUuid: reg.uuid,
                port,
                encryption: t.encryption,
                networkType,
                ...(t.testUuid ? { testUuid: t.testUuid } : {}),
              }),
            );
          },
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
  where: { host: string; port: number; transport: Transport; detectUpgrade?: boolean },
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
      // The measurement server's certificate is checked only on request (F5, specs/rmbt.md §2.2).
      tls: { insecure: !s.measurement_tls_verify, ...(s.tls_ca ? { ca: readCa(s.tls_ca) } : {}) },
      timeoutMs: s.io_timeout * 1000,
    },
    token,
    duration,
    maxThreads,
    // Forced threads never exceed what the server granted (F11; direct mode: maxThreads is the setting).
    ...(s.threads ? { forceThreads: Math.min(s.threads, maxThreads) } : {}),
    pings: Math.max(pings, s.pings),
    pingMinS: s.ping_duration,
    pretestS: s.pretest_duration,
    ioTimeoutMs: s.io_timeout * 1000,
    loadedLatency: s.loaded_latency,
    ...(s.bytes ? { bytes: s.bytes } : {}),
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
    const localAddress = resolveSource(s.source_address, s.ip_version);
    const ctl: ControlOptions | undefined = s.control_url
      ? {
          baseUrl: s.control_url,
          api: s.control_api,
          headers: parseHeaders(s.control_headers),
          tls: { insecure: s.tls_insecure, ...(s.tls_ca ? { ca: readCa(s.tls_ca) } : {}) },
          timeoutMs: s.io_timeout * 1000,
          // An IP literal in control_url is used as written (settings needs no pinning; testRequest does,
          // and planControl refuses a literal of the other family there).
          ...(s.ip_version !== 'any' && !hostFamily(s.control_url)
            ? { family: Number(s.ip_version) as 4 | 6 }
            : {}),
          ...(localAddress ? { localAddress } : {}),
          ...(ctx.signal ? { signal: ctx.signal } : {}),
          ...(ctx.onControl ? { onExchange: ctx.onControl } : {}),
        }
      : undefined;
    if (s.bytes && ctl)
      throw new ProbeError(
        'BP_ERR_CONFIG',
        'bytes applies to direct mode (server and key): a control server hands out a timed test',
      );
    plan = ctl ? await planControl(s, ctx, ctl) : await planDirect(s);
    if (s.bytes) result.size_limit = { bytes: s.bytes, reached: false };
    result.server = plan.server;
    if (plan.rmbt) result.rmbt = plan.rmbt;
    if (plan.rmbt?.control_duration_s !== undefined)
      ctx.log?.info(
        { handed_out_s: plan.rmbt.control_duration_s, duration_s: plan.rmbt.duration_s },
        `the control server handed out ${plan.rmbt.control_duration_s} s; measuring ${plan.rmbt.duration_s} s as asked (--duration)`,
      );
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
    // GETCHUNKS and the counted PUT ended on their last chunk: exactly the size asked for moved
    if (result.size_limit) result.size_limit.reached = true;
  } catch (err) {
    markFailed(result, err, Boolean(ctx.signal?.aborted));
    const d = result.rmbt;
    // A server that refuses a GETTIME longer than it allows answers ERR: name the override as the cause.
    if (d?.control_duration_s !== undefined && result.error && /ERR/.test(result.error.message))
      result.error.message += ` (this run asked for ${d.duration_s} s per direction with --duration; the control server handed out ${d.control_duration_s} s, and the measurement server does not allow more)`;
  }
  Object.assign(result, rmbtFigures(raw));
  if (raw.version) result.server.version = raw.version;
  if (raw.transport) result.server.transport = raw.transport;
  if (raw.serverIp) result.server.address = raw.serverIp;
  if (raw.tls) result.server.tls = raw.tls;
  // The engine that really moved the bytes: native only if every bulk phase ran natively.
  result.engine = raw.engines.size === 0 ? ctx.engine.kind : raw.engines.has('js') ? 'js' : 'native';
  if (ctx.engine.kind === 'native' && result.engine === 'js') {
    ctx.log?.info(
      { transport: result.server.transport, reason: ctx.engine.tlsUnavailable },
      'TLS streams ran on the js engine: native TLS is not available in this Node',
    );
  }
  if (raw.singleThreadFallback) result.flags.push('single_thread_fallback');
  if (result.latency?.limited) result.flags.push('latency_limited');
  const cpu = process.cpuUsage(cpu0);
  const wallMs = Date.now() - started.getTime();
  // percent of one core, to 0.1 % (cpuUsage is in µs)
  result.cpu.local_percent =
    wallMs > 0 ? Math.round(((cpu.user + cpu.system) / 1000 / wallMs) * 1000) / 10 : 0;
  result.finished_at = new Date().toISOString();
  if (plan?.submit && result.rmbt) {
    if (result.status !== 'ok') {
      // RTR's control server answers a failed test (test_status 1) with an empty error list and stores
      // nothing (F14: ResultServiceImpl), so a failed or aborted run is not filed as if it had been.
      result.rmbt.submit_skipped = `the run ${result.status === 'aborted' ? 'was aborted' : 'failed'}; control servers discard such results`;
    } else {
      try {
        await plan.submit(raw, result);
        result.rmbt.submitted = true;
      } catch (err) {
        result.rmbt.submit_error = toProbeError(err).message;
        ctx.log?.warn({ err: result.rmbt.submit_error }, 'result submission failed');
      }
    }
  }
  return result;
}
