import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { type MqttSettings } from './config/schema.js';
import { type Settings } from './config/settings.js';
import { type BrokerConfig, supervisorMqtt, supervisorSelfSlug } from './config/supervisor.js';
import { resolveTargets, type TargetSettings } from './config/targets.js';
import { loadEngine } from './engine/loader.js';
import type { Engine } from './engine/types.js';
import { ProbeError, toProbeError } from './errors.js';
import type { Logger } from './log.js';
import { discoveryPayload, expireAfter } from './mqtt/discovery.js';
import { MqttPublisher } from './mqtt/publisher.js';
import { Topics } from './mqtt/topics.js';
import { type RunningRmbtServers, startRmbtServers } from './rmbt/serve.js';
import { type Inbound, startInbound } from './runner/inbound.js';
import { Runner } from './runner/runner.js';
import { nextPlanned, Scheduler, setScheduleTimezone } from './runner/schedule.js';
import { DataDirLock } from './store/lock.js';
import { Store } from './store/store.js';
import { raiseFdLimit, webConnectionBudget } from './engine/fdlimit.js';
import { buildApp } from './web/app.js';
import { ensureWebToken, isLoopbackBind } from './web/token.js';

/**
 * The composition root of `serve` (design.md data flow): settings → store, engine, runner, scheduler,
 * MQTT publisher. Everything is passed in; nothing reads a global.
 */
export interface Service {
  readonly runner: Runner;
  /** our btest/RMBT servers when btest_server.enabled / rmbt_server.enabled (issue 18) */
  readonly inbound?: Inbound;
  readonly scheduler: Scheduler;
  readonly store: Store;
  readonly targets: readonly TargetSettings[];
  readonly deviceId: string;
  /** the page's port when web.enabled (0 asks for a free one) */
  readonly webPort?: number;
  publisher(): MqttPublisher | undefined;
  /** aborts a run in progress (stored as aborted), goes offline on MQTT, closes everything */
  close(): Promise<void>;
}

export interface ServiceOptions {
  env?: NodeJS.ProcessEnv;
  version: string;
  /** test hooks */
  busyWindowMs?: number;
  /** the servers of btest_server/rmbt_server.enabled on free ports (tests) */
  ephemeralServerPorts?: boolean;
  birthDelayMs?: [number, number];
  backoffMs?: [number, number];
}

/** Where a user finds help: the origin's support_url in HA's device page and MQTT log lines. */
export const SUPPORT_URL = 'https://github.com/bandwidth-probe/bandwidth-probe/issues';

/** A random id made once per data directory: stable unique_ids across restarts (specs/ha-mqtt.md §8.5). */
export function installId(dataDir: string): string {
  const file = join(dataDir, 'install-id');
  try {
    const v = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{8,32}$/.test(v)) return v;
  } catch {
    // first start
  }
  const id = randomBytes(4).toString('hex');
  try {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(file, `${id}\n`);
  } catch (err) {
    throw new ProbeError('BP_ERR_STORE', `writing ${file}: ${(err as Error).message}`);
  }
  return id;
}

/** The period of a target's schedule in seconds (for expire_after); 0 for a disabled target. */
/** The phases a target measures latency under load in (the discovery's latency entities, issue 17). */
export function latencyPhases(t: TargetSettings): ('download' | 'upload' | 'both')[] {
  if (t.type === 'rmbt') return t.rmbt?.loaded_latency === false ? [] : ['download', 'upload'];
  const b = t.btest;
  if (!b?.loaded_latency) return [];
  return b.direction === 'receive' ? ['download'] : b.direction === 'send' ? ['upload'] : ['both'];
}

export function periodS(t: TargetSettings, now = Date.now()): number {
  if (!t.enabled) return 0;
  const a = nextPlanned(t, now);
  const b = nextPlanned(t, a);
  return (b - a) / 1000;
}

/** Which broker: the url setting, else the Supervisor's, else none (MQTT off). */
export async function resolveBroker(
  m: MqttSettings,
  env: NodeJS.ProcessEnv,
): Promise<(BrokerConfig & { ca?: string; tlsInsecure?: boolean }) | undefined> {
  if (m.enabled === 'off') return undefined;
  const tls = { ...(m.ca ? { ca: m.ca } : {}), tlsInsecure: m.tls_insecure };
  if (m.url)
    return {
      url: m.url,
      ...(m.username ? { username: m.username } : {}),
      ...(m.password ? { password: m.password } : {}),
      ...tls,
    };
  if (!env.SUPERVISOR_TOKEN && !env.HASSIO_TOKEN) {
    if (m.enabled === 'on')
      throw new ProbeError(
        'BP_ERR_CONFIG',
        'mqtt.enabled is on but no mqtt.url is set and there is no Supervisor',
      );
    return undefined;
  }
  // The user's credentials win over the Supervisor's when both exist.
  const sup = await supervisorMqtt(env);
  return {
    ...sup,
    ...(m.username ? { username: m.username } : {}),
    ...(m.password ? { password: m.password } : {}),
    ...tls,
  };
}

export async function startService(s: Settings, log: Logger, opts: ServiceOptions): Promise<Service> {
  const env = opts.env ?? process.env;
  // One service per data directory (issue 14 row 16); released in close(), stale ones taken over.
  const lock = DataDirLock.acquire(s.general.data_dir);
  try {
    return await startLocked(s, log, opts, env, lock);
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function startLocked(
  s: Settings,
  log: Logger,
  opts: ServiceOptions,
  env: NodeJS.ProcessEnv,
  lock: DataDirLock,
): Promise<Service> {
  // Everything started so far, closed in reverse if a later part fails: a service that cannot have
  // every part it needs exits non-zero before it ever says `online` (issue 15: a taken page port left a
  // healthy-looking device that never measured).
  const undo: (() => Promise<void> | void)[] = [];
  try {
    return await startParts(s, log, opts, env, lock, undo);
  } catch (err) {
    for (const u of undo.reverse()) {
      try {
        await u();
      } catch {
        // best effort: the original error is what the user needs to see
      }
    }
    throw err;
  }
}

/** The device's link to the status page: HA's ingress panel for the add-on, the page's URL otherwise. */
async function configurationUrl(
  env: NodeJS.ProcessEnv,
  ingress: boolean,
  bind: string | undefined,
  port: number | undefined,
): Promise<string | undefined> {
  if (ingress) {
    const slug = await supervisorSelfSlug(env).catch(() => undefined);
    return slug ? `homeassistant://hassio/ingress/${slug}` : undefined;
  }
  if (port === undefined || !bind || isLoopbackBind(bind)) return undefined;
  const host = bind === '0.0.0.0' || bind === '::' ? hostname() : bind;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}

async function startParts(
  s: Settings,
  log: Logger,
  opts: ServiceOptions,
  env: NodeJS.ProcessEnv,
  lock: DataDirLock,
  undo: (() => Promise<void> | void)[],
): Promise<Service> {
  const zone = setScheduleTimezone(s.service.timezone ?? env.TZ);
  const store = Store.open(s.general.data_dir, log, { resetCorrupt: s.service.reset_corrupt_db });
  undo.push(() => store.close());
  const engine: Engine = loadEngine(s.general.engine, log);
  let loopback: RunningRmbtServers | undefined;
  let targets = s.targets;
  const selfTest = !targets.length;
  if (selfTest) {
    // No targets configured: measure against our own RMBT servers on loopback, so a fresh install shows
    // a real result and the whole pipeline (store, page) works before anything is set up.
    const servers = await startRmbtServers(
      // HTTP Upgrade in TLS, as public deployments send clients, where the native loop carries TLS
      // (issue 16); plain HTTP Upgrade where it does not, so the native loop still moves the bytes.
      // (port, tls_port and control_port: any non-zero value means "on"; ephemeralPorts picks free ones)
      {
        ...s.rmbt_server,
        bind: '127.0.0.1',
        port: 1,
        tls_port: 1,
        control_port: 1,
        test_duration: 3,
        test_threads: 2,
        encryption: engine.tls !== undefined,
      },
      s.general,
      engine,
      log,
      { ephemeralPorts: true },
    );
    loopback = servers;
    undo.push(() => servers.close());
    const r = resolveTargets(
      [
        {
          id: 'loopback',
          name: 'Loopback self-test',
          type: 'rmbt',
          control_url: `http://127.0.0.1:${servers.control!.port}/RMBTControlServer`,
          tls_ca: servers.certPath,
          accept_terms: true,
          jitter: 0,
        },
      ],
      { rmbt: s.rmbt, btest: s.btest },
      'built-in loopback target',
    );
    targets = r.targets;
    log.warn(
      { publish_self_test: s.service.publish_self_test },
      'no targets configured: running the loopback self-test (this machine\'s speed, not your line); add a target (DOCS.md "Targets")',
    );
  }
  // The self-test stays off HA unless asked for: 60 Gbit/s loopback figures would seed HA's long-term
  // statistics of the very entities a real target later reuses.
  const mqttOn = !selfTest || s.service.publish_self_test;
  const runner = new Runner({
    targets,
    general: s.general,
    service: s.service,
    engine,
    store,
    log,
    ...(opts.busyWindowMs !== undefined ? { busyWindowMs: opts.busyWindowMs } : {}),
  });
  undo.push(() => runner.stop());
  const scheduler = new Scheduler(targets, (id) => runner.enqueue(id, 'schedule'), { log });
  undo.push(() => scheduler.stop());
  // Our servers, when enabled: a taken port fails the start like a taken page port does.
  const inbound = await startInbound(s, engine, store, runner, log, {
    ...(opts.ephemeralServerPorts ? { ephemeralPorts: true } : {}),
  });
  if (inbound) undo.push(() => inbound.close());

  const deviceId = `bwprobe_${installId(s.general.data_dir)}`;
  let publisher: MqttPublisher | undefined;
  let brokerRetry: NodeJS.Timeout | undefined;
  let closed = false;
  undo.push(() => {
    closed = true;
    clearTimeout(brokerRetry);
  });
  const topics = new Topics(s.mqtt.base_topic, deviceId, s.mqtt.discovery_prefix);

  // The page first: it is the part most likely to fail at start (a taken port), and nothing has been
  // announced on MQTT yet when it does.
  let web: FastifyInstance | undefined;
  let webPort: number | undefined;
  let bind: string | undefined;
  const ingress = s.web.ingress === 'on' || (s.web.ingress === 'auto' && Boolean(env.SUPERVISOR_TOKEN));
  if (s.web.enabled) {
    // Safe by default (issue 14 row 5): loopback standalone; wider only with credentials, which are
    // generated when none are set, unless the user says `unauthenticated` (and is warned every start).
    bind = s.web.bind ?? (ingress ? '0.0.0.0' : '127.0.0.1');
    const wide = !ingress && !isLoopbackBind(bind);
    const hasCreds = Boolean((s.web.username && s.web.password) || s.web.api_token);
    let webSettings = s.web;
    let tokenAsPassword = false;
    if (wide && !hasCreds && !s.web.unauthenticated) {
      const t = ensureWebToken(s.general.data_dir);
      webSettings = { ...s.web, api_token: t.token };
      tokenAsPassword = true;
      if (t.created)
        log.warn(
          { bind, token_file: t.path },
          `the page is bound to ${bind} without credentials: it now requires this generated token (as "Authorization: Bearer <token>", or as the password with any user name): ${t.token}`,
        );
      else log.info({ bind, token_file: t.path }, 'the page requires the token kept in the token file');
    } else if (wide && !hasCreds) {
      log.warn(
        { bind },
        `UNAUTHENTICATED: the page, its JSON API, POST api/run and /metrics are open to anyone who can reach ${bind} (web.unauthenticated is on)`,
      );
    }
    const fds = raiseFdLimit(log);
    const app = await buildApp({
      runner,
      scheduler,
      store,
      targets,
      deviceId,
      version: opts.version,
      engine: engine.kind,
      mqtt: () => publisher?.status(),
      settings: webSettings,
      ingress,
      bind,
      tokenAsPassword,
      maxConnections: webConnectionBudget(fds.soft),
      selfTest: selfTest ? { published: mqttOn } : undefined,
      ...(inbound ? { inbound } : {}),
      timezone: zone,
      log: log.child({ module: 'web' }),
    });
    web = app;
    // SSE streams never end by themselves: close them so the server can stop
    undo.push(() => Promise.race([app.close(), new Promise((r) => setTimeout(r, 1000))]).then(() => {}));
    try {
      await app.listen({ host: bind, port: s.web.port });
    } catch (err) {
      throw new ProbeError(
        'BP_ERR_CONFIG',
        `the page cannot listen on ${bind}:${s.web.port}: ${(err as Error).message}`,
      );
    }
    webPort = (app.server.address() as AddressInfo).port;
    log.info(
      { bind, port: webPort, ingress, max_connections: app.server.maxConnections, nofile: fds.soft },
      'status page listening',
    );
  }

  const discovery = discoveryPayload({
    topics,
    deviceName: s.mqtt.device_name,
    version: opts.version,
    model: env.SUPERVISOR_TOKEN ? 'Home Assistant add-on' : 'standalone',
    supportUrl: SUPPORT_URL,
    ...(s.web.enabled ? { configurationUrl: await configurationUrl(env, ingress, bind, webPort) } : {}),
    targets: targets.map((t) => ({
      id: t.id,
      name: t.name,
      kind: t.type,
      udp: t.type === 'btest' && t.btest?.protocol === 'udp',
      latency: latencyPhases(t),
      expireAfter: expireAfter(
        periodS(t),
        s.service.run_timeout + s.service.busy_retries * s.service.busy_retry_delay,
      ),
    })),
    ...(inbound ? { inbound: { udp: Boolean(inbound.btest) } } : {}),
  });
  const startMqtt = async (): Promise<void> => {
    let broker: Awaited<ReturnType<typeof resolveBroker>>;
    try {
      broker = await resolveBroker(s.mqtt, env);
    } catch (err) {
      const e = toProbeError(err, 'BP_ERR_SUPERVISOR');
      if (e.code === 'BP_ERR_CONFIG') throw e;
      // No broker from the Supervisor yet (Mosquitto still starting, or not installed): ask again later.
      log.warn({ code: e.code, err: e.detail }, 'no MQTT broker yet; asking again in 60 s');
      if (!closed) brokerRetry = setTimeout(() => void startMqtt().catch(() => {}), 60_000);
      return;
    }
    if (!broker || closed) {
      if (!broker) log.info('MQTT off (no broker configured)');
      return;
    }
    if (broker.provider) log.info({ provider: broker.provider }, 'MQTT broker from the Supervisor');
    publisher = new MqttPublisher({
      broker,
      clientId: s.mqtt.client_id ?? deviceId,
      topics,
      birthTopic: s.mqtt.birth_topic,
      discovery,
      ...(inbound ? { inbound: true } : {}),
      runner,
      store,
      log: log.child({ module: 'mqtt' }),
      ...(opts.birthDelayMs ? { birthDelayMs: opts.birthDelayMs } : {}),
      ...(opts.backoffMs ? { backoffMs: opts.backoffMs } : {}),
    });
    undo.push(() => publisher?.stop());
    publisher.start();
  };
  if (mqttOn) await startMqtt();
  else log.info('MQTT not used for the loopback self-test (service.publish_self_test is off)');

  const prune = () => {
    try {
      const n = store.prune(s.service.retention_days);
      if (n) log.info({ deleted: n, retention_days: s.service.retention_days }, 'old runs deleted');
    } catch (err) {
      log.error({ code: toProbeError(err).code, err: String(err) }, 'pruning failed');
    }
  };
  prune();
  const pruneTimer = setInterval(prune, 86_400_000);
  pruneTimer.unref();

  scheduler.start();
  // The self-test also runs once at start (whatever run_on_start says), so a first start shows a result.
  if (s.service.run_on_start || selfTest) runner.enqueue('all', 'start');
  log.info({ timezone: zone }, 'cron schedules use this time zone');
  for (const e of scheduler.entries())
    log.info({ target: e.target, next_run: new Date(e.due).toISOString() }, 'scheduled');

  return {
    runner,
    ...(inbound ? { inbound } : {}),
    scheduler,
    store,
    targets,
    deviceId,
    ...(webPort !== undefined ? { webPort } : {}),
    publisher: () => publisher,
    async close() {
      closed = true;
      // SSE streams never end by themselves: close them so the server can stop
      if (web) await Promise.race([web.close(), new Promise((r) => setTimeout(r, 1000))]);
      clearTimeout(brokerRetry);
      clearInterval(pruneTimer);
      scheduler.stop();
      await runner.stop();
      // the servers' last tests are recorded before MQTT goes
      await inbound?.close();
      await publisher?.stop();
      await loopback?.close();
      store.close();
      lock.release();
    },
  };
}
