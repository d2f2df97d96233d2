import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Settings } from './config/settings.js';
import { supervisorSelfSlug } from './config/supervisor.js';
import { clientSettings, type TargetSettings } from './config/targets.js';
import { loadEngine } from './engine/loader.js';
import { ProbeError, toProbeError } from './errors.js';
import type { Logger } from './log.js';
import { type DiscoveryTarget, discoveryPayload, expireAfter } from './mqtt/discovery.js';
import type { MqttPublisher } from './mqtt/publisher.js';
import { Topics } from './mqtt/topics.js';
import { protocolOf } from './protocols/registry.js';
import { type Inbound, startInbound } from './runner/inbound.js';
import { Runner } from './runner/runner.js';
import { nextPlanned, Scheduler, setScheduleTimezone } from './runner/schedule.js';
import { type MqttPart, startMqtt } from './service/mqtt.js';
import { closePage, type Page, startPage } from './service/page.js';
import { selfTestTargets } from './service/selftest.js';
import { Undo } from './service/undo.js';
import { DataDirLock } from './store/lock.js';
import { Store } from './store/store.js';
import { isLoopbackBind } from './web/token.js';

export { resolveBroker } from './service/mqtt.js';

/**
 * The composition root of `serve` (design.md data flow): settings → store, engine, runner, scheduler,
 * our servers, the page, the MQTT publisher and retention, each started by a starter of its own
 * (src/service/). Everything is passed in; nothing reads a global.
 */
export interface Service {
  readonly runner: Runner;
  /** our servers, when a protocol's `<type>_server.enabled` is on */
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
  /** the servers of `<type>_server.enabled` on free ports (tests) */
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
export function periodS(t: TargetSettings, now = Date.now()): number {
  if (!t.enabled) return 0;
  // a random schedule: its longest gap, so the figures never expire between two runs
  if (t.random) return t.random.maxMin * 60;
  const a = nextPlanned(t, now);
  const b = nextPlanned(t, a);
  return (b - a) / 1000;
}

/** A target as discovery needs it: which figures its protocol measures, and when they expire. */
function discoveryTarget(t: TargetSettings, s: Settings): DiscoveryTarget {
  const m = protocolOf(t.type)!.measures(clientSettings(t));
  return {
    id: t.id,
    name: t.name,
    ping: m.ping,
    jitter: m.jitter,
    udp: m.loss,
    latency: m.latency,
    ...(m.figures ? { figures: m.figures } : {}),
    expireAfter: expireAfter(
      periodS(t),
      s.service.run_timeout + s.service.busy_retries * s.service.busy_retry_delay,
    ),
  };
}

export async function startService(s: Settings, log: Logger, opts: ServiceOptions): Promise<Service> {
  const env = opts.env ?? process.env;
  // One service per data directory; released in close(), stale ones taken over.
  const lock = DataDirLock.acquire(s.general.data_dir);
  const undo = new Undo();
  try {
    return await startParts(s, log, opts, env, lock, undo);
  } catch (err) {
    await undo.run();
    lock.release();
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

/** Deletes runs past retention_days now and once a day. */
function startRetention(store: Store, days: number, log: Logger): () => void {
  const prune = () => {
    try {
      const n = store.prune(days);
      if (n) log.info({ deleted: n, retention_days: days }, 'old runs deleted');
    } catch (err) {
      log.error({ code: toProbeError(err).code, err: String(err) }, 'pruning failed');
    }
  };
  prune();
  const timer = setInterval(prune, 86_400_000);
  timer.unref();
  return () => clearInterval(timer);
}

async function startParts(
  s: Settings,
  log: Logger,
  opts: ServiceOptions,
  env: NodeJS.ProcessEnv,
  lock: DataDirLock,
  undo: Undo,
): Promise<Service> {
  const zone = setScheduleTimezone(s.service.timezone ?? env.TZ);
  const store = Store.open(s.general.data_dir, log, { resetCorrupt: s.service.reset_corrupt_db });
  undo.push(() => store.close());
  const engine = loadEngine(s.general.engine, log);
  const { targets, selfTest } = await selfTestTargets(s, engine, log, undo);
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
  const stopRunner = undo.push(() => runner.stop());
  const scheduler = new Scheduler(targets, (id) => runner.enqueue(id, 'schedule'), { log });
  const stopScheduler = undo.push(() => scheduler.stop());
  const inbound = await startInbound(s, engine, store, runner, log, {
    ...(opts.ephemeralServerPorts ? { ephemeralPorts: true } : {}),
  });
  const closeInbound = undo.push(async () => inbound?.close());
  const deviceId = `bwprobe_${installId(s.general.data_dir)}`;
  const ingress = s.web.ingress === 'on' || (s.web.ingress === 'auto' && Boolean(env.SUPERVISOR_TOKEN));
  let mqtt: MqttPart | undefined;
  let stopMqtt = async () => {};
  // The page first: it is the part most likely to fail at start (a taken port), and nothing has been
  // announced on MQTT yet when it does.
  let page: Page | undefined;
  let closeWeb = async () => {};
  if (s.web.enabled) {
    const p = await startPage({
      s,
      runner,
      scheduler,
      store,
      targets,
      deviceId,
      version: opts.version,
      engine: engine.kind,
      mqtt: () => mqtt?.publisher()?.status(),
      ingress,
      selfTest: selfTest ? { published: mqttOn } : undefined,
      inbound,
      timezone: zone,
      log,
    });
    page = p;
    closeWeb = undo.push(() => closePage(p.app));
  }
  const topics = new Topics(s.mqtt.base_topic, deviceId, s.mqtt.discovery_prefix);
  const discovery = discoveryPayload({
    topics,
    deviceName: s.mqtt.device_name,
    version: opts.version,
    model: env.SUPERVISOR_TOKEN ? 'Home Assistant add-on' : 'standalone',
    supportUrl: SUPPORT_URL,
    ...(s.web.enabled
      ? { configurationUrl: await configurationUrl(env, ingress, page?.bind, page?.port) }
      : {}),
    targets: targets.map((t) => discoveryTarget(t, s)),
    ...(inbound ? { inbound: { udp: inbound.servers.some((x) => x.protocol.server?.loss) } } : {}),
  });
  if (mqttOn) {
    mqtt = await startMqtt(
      s.mqtt,
      env,
      {
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
      },
      log,
    );
    const m = mqtt;
    stopMqtt = undo.push(() => m.stop());
  } else log.info('MQTT not used for the loopback self-test (service.publish_self_test is off)');
  const stopRetention = undo.push(startRetention(store, s.service.retention_days, log));
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
    ...(page ? { webPort: page.port } : {}),
    publisher: () => mqtt?.publisher(),
    async close() {
      // the order matters: the run in progress is stored (as aborted) and our servers' last tests are
      // recorded while MQTT is still there to publish them; the history closes last
      await closeWeb();
      await stopRetention();
      await stopScheduler();
      await stopRunner();
      await closeInbound();
      await stopMqtt();
      // then the rest, newest first: the loopback servers, the history
      await undo.run();
      lock.release();
    },
  };
}
