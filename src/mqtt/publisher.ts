import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { BrokerConfig } from '../config/supervisor.js';
import { ProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { INBOUND_TARGET } from '../measure/inbound.js';
import type { RunResult } from '../measure/result.js';
import type { Runner, RunnerEvent } from '../runner/runner.js';
import type { Store } from '../store/store.js';
import { parseRetainedDiscovery, removalPayload } from './discovery.js';
import { type OnOff, PAYLOAD_RUN, runEvent, type Topics, targetState } from './topics.js';

/**
 * The MQTT side of the service (specs/ha-mqtt.md §4, §8): availability through the LWT, device discovery
 * (sent only when the broker's retained copy differs, re-sent when HA announces itself), retained states,
 * one QoS 1 event per run replayed from the store in order after an outage, and run-now commands. It
 * never blocks the runner: while the broker is away runs are stored unpublished and wait.
 */
export interface PublisherOptions {
  broker: BrokerConfig & { ca?: string; tlsInsecure?: boolean };
  clientId: string;
  topics: Topics;
  birthTopic: string;
  discovery: Record<string, unknown>;
  /** our servers run: the `inbound` pseudo-target's state is ours to publish too */
  inbound?: boolean;
  runner: Runner;
  store: Store;
  log?: Logger;
  /** random wait before re-announcing after HA's birth message (§4: a small random delay) */
  birthDelayMs?: [number, number];
  /** reconnect backoff: first wait and cap */
  backoffMs?: [number, number];
  /** how long to wait for the broker's retained discovery copy after subscribing */
  retainedWaitMs?: number;
  /** a publish that gets no PUBACK in this time counts as failed (the run stays queued) */
  publishTimeoutMs?: number;
  /** how long after a removal the removed targets' retained state is emptied (HA unsubscribes first) */
  staleClearDelayMs?: number;
}

/**
 * HA takes ~110 ms to unsubscribe a removed entity (measured against real HA core); state emptied
 * before that reaches its templates as "" and logs template errors and "Erroneous JSON".
 */
const STALE_CLEAR_DELAY_MS = 3000;

export interface PublisherStatus {
  connected: boolean;
  broker: string;
  last_error?: { code: string; message: string };
  published_runs: number;
  discovery_sent: number;
}

const AUTH_CODES = new Set([4, 5, 134, 135]);
/** A run command's payload is empty, "all", "RUN" or a target id: anything longer is not one. */
const MAX_COMMAND_BYTES = 64;
const TARGET_ID = /^[a-z0-9_]{1,40}$/;

/**
 * At most `lines` log lines per window for one kind of bad input; the rest are counted and reported in
 * one line when the next window opens (5000 bad commands were 5000 log lines).
 */
export class LogBudget {
  private since = 0;
  private used = 0;
  private dropped = 0;
  constructor(
    private readonly lines = 5,
    private readonly windowMs = 60_000,
  ) {}

  /** Whether to log now; `suppressed` is how many were dropped in the window that just ended. */
  take(now = Date.now()): { log: boolean; suppressed: number } {
    let suppressed = 0;
    if (now - this.since >= this.windowMs) {
      suppressed = this.dropped;
      this.since = now;
      this.used = 0;
      this.dropped = 0;
    }
    if (this.used < this.lines) {
      this.used++;
      return { log: true, suppressed };
    }
    this.dropped++;
    return { log: false, suppressed };
  }
}

/** Up to 40 printable characters of untrusted text for a log line. */
const preview = (s: string) => s.slice(0, 40).replace(/[^\x20-\x7e]/g, '?');
/** How far back a replay after an outage goes (older runs are history, not events). */
const REPLAY_MAX_AGE_MS = 7 * 86_400_000;

export class MqttPublisher {
  private client: MqttClient | undefined;
  private connected = false;
  private stopping = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private birthTimer: NodeJS.Timeout | undefined;
  /** a removal's previous config whose retained state topics are still to be emptied */
  private staleClear: { previous: Record<string, unknown>; timer: NodeJS.Timeout } | undefined;
  /** the discovery payload the broker holds, as far as we know (retained copy or our last publish) */
  private brokerConfig: string | undefined;
  private retainedSeen: (() => void) | undefined;
  private chain: Promise<void> = Promise.resolve();
  private readonly unsubscribe: () => void;
  private readonly stats: PublisherStatus;
  private readonly badCommands = new LogBudget();

  constructor(private readonly o: PublisherOptions) {
    this.stats = { connected: false, broker: o.broker.url, published_runs: 0, discovery_sent: 0 };
    this.unsubscribe = o.runner.on((e) => this.onRunner(e));
  }

  status(): PublisherStatus {
    return { ...this.stats, connected: this.connected };
  }

  start(): void {
    this.connect();
  }

  private connect(): void {
    const { broker, topics } = this.o;
    const opts: IClientOptions = {
      clientId: this.o.clientId,
      clean: true,
      protocolVersion: 4,
      // Reconnects are ours (backoff, and a fresh client so nothing is resent behind the store's back).
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: 30,
      will: { topic: topics.availability, payload: Buffer.from('offline'), qos: 1, retain: true },
      ...(broker.username ? { username: broker.username } : {}),
      ...(broker.password ? { password: broker.password } : {}),
      ...(broker.url.startsWith('mqtts:')
        ? {
            rejectUnauthorized: !broker.tlsInsecure,
            ...(broker.ca ? { ca: readFileSync(broker.ca) } : {}),
          }
        : {}),
    };
    let client: MqttClient;
    try {
      client = mqtt.connect(broker.url, opts);
    } catch (err) {
      this.fail(new ProbeError('BP_ERR_MQTT', (err as Error).message));
      this.scheduleReconnect();
      return;
    }
    this.client = client;
    client.on('connect', () => {
      if (client !== this.client) return;
      this.connected = true;
      this.attempt = 0;
      delete this.stats.last_error;
      this.o.log?.info({ broker: broker.url }, 'MQTT connected');
      this.enqueue(() => this.onConnected(client));
    });
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet.retain));
    client.on('error', (err) => {
      const code = (err as { code?: number }).code;
      this.fail(
        typeof code === 'number' && AUTH_CODES.has(code)
          ? new ProbeError('BP_ERR_MQTT_AUTH', err.message)
          : new ProbeError('BP_ERR_MQTT', err.message),
      );
    });
    client.on('close', () => {
      if (client !== this.client) return;
      if (this.connected) this.o.log?.warn({ broker: broker.url }, 'MQTT connection lost');
      this.connected = false;
      if (!this.stopping) this.scheduleReconnect();
    });
  }

  private fail(e: ProbeError): void {
    this.stats.last_error = { code: e.code, message: e.message };
    this.o.log?.error({ code: e.code, err: e.detail || e.message, broker: this.o.broker.url }, 'MQTT error');
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.stopping) return;
    const [first, cap] = this.o.backoffMs ?? [1000, 60_000];
    const wait = Math.min(cap, first * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt++;
    const old = this.client;
    this.client = undefined;
    old?.end(true);
    this.o.log?.debug({ wait_ms: Math.round(wait), attempt: this.attempt }, 'MQTT reconnect scheduled');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.stopping) this.connect();
    }, wait);
  }

  /** Work that publishes runs one item at a time, in order (a flush never overlaps another). */
  private enqueue(work: () => Promise<void>): Promise<void> {
    this.chain = this.chain.then(work).catch((err) => {
      this.o.log?.warn({ err: String(err) }, 'MQTT publish interrupted');
    });
    return this.chain;
  }

  private async publish(
    client: MqttClient,
    topic: string,
    payload: string,
    opts: { retain?: boolean; qos?: 0 | 1 } = {},
  ): Promise<void> {
    if (client !== this.client || !this.connected) throw new ProbeError('BP_ERR_MQTT', 'not connected');
    const ms = this.o.publishTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.publishAsync(topic, payload, { qos: opts.qos ?? 1, retain: opts.retain ?? false }),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new ProbeError('BP_ERR_MQTT', `no PUBACK within ${ms} ms`)), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async onConnected(client: MqttClient): Promise<void> {
    const { topics } = this.o;
    await this.publish(client, topics.availability, 'online', { retain: true });
    const retained = new Promise<void>((r) => {
      this.retainedSeen = r;
    });
    await client.subscribeAsync({
      [this.o.birthTopic]: { qos: 1 },
      [topics.runAll]: { qos: 1 },
      [`${topics.root}/+/run`]: { qos: 1 },
      [topics.discovery]: { qos: 1 },
    });
    // The broker sends its retained discovery copy (if any) right after the SUBACK.
    await Promise.race([retained, new Promise((r) => setTimeout(r, this.o.retainedWaitMs ?? 500))]);
    this.retainedSeen = undefined;
    const before = this.staleClear;
    await this.announce(client, false);
    const announcedNow = this.staleClear !== before;
    await this.publishStates(client);
    await this.flush(client);
    // a removal's clean-up that came due while we were offline (HA let go of those entities long ago)
    if (this.staleClear && !announcedNow) await this.runStaleClear(client);
  }

  /** Discovery: sent when the broker's copy differs (or HA asked for it), with removals first (§2). */
  private async announce(client: MqttClient, force: boolean): Promise<void> {
    const payload = JSON.stringify(this.o.discovery);
    if (!force && this.brokerConfig === payload) {
      this.o.log?.debug('discovery unchanged on the broker, not re-sent');
      return;
    }
    const previous = parseRetainedDiscovery(this.brokerConfig);
    const removal = removalPayload(previous, this.o.discovery);
    if (removal)
      await this.publish(client, this.o.topics.discovery, JSON.stringify(removal), { retain: true });
    await this.publish(client, this.o.topics.discovery, payload, { retain: true });
    this.brokerConfig = payload;
    this.stats.discovery_sent++;
    this.o.log?.info({ topic: this.o.topics.discovery, removed: Boolean(removal) }, 'discovery published');
    // The removed targets' retained state goes only once HA has let go of their entities (§2 order:
    // reduced config, final config, then the data topics), or HA renders "" in their templates.
    if (removal) {
      clearTimeout(this.staleClear?.timer);
      const timer = setTimeout(() => {
        // on the connection of the moment; while offline it waits for the next connect
        const c = this.client;
        if (c && this.connected) void this.enqueue(() => this.runStaleClear(c));
      }, this.o.staleClearDelayMs ?? STALE_CLEAR_DELAY_MS);
      timer.unref?.();
      this.staleClear = { previous: previous!, timer };
    }
  }

  private async runStaleClear(client: MqttClient): Promise<void> {
    const pending = this.staleClear;
    if (!pending) return;
    this.staleClear = undefined;
    clearTimeout(pending.timer);
    await this.clearStale(client, pending.previous);
  }

  /**
   * Retained state topics of removed targets are emptied, so nothing stale stays on the broker. Only
   * topics we derive from our own ids are touched (`<root>/<target id>/state|running`), never whatever
   * a retained config names (a forged config made us wipe foreign retained topics).
   */
  private async clearStale(client: MqttClient, previous: Record<string, unknown>): Promise<void> {
    const { topics } = this.o;
    const ours = (t: string) => {
      if (!t.startsWith(`${topics.root}/`)) return false;
      const m = /^([^/]+)\/(state|running)$/.exec(t.slice(topics.root.length + 1));
      return Boolean(m && TARGET_ID.test(m[1]!) && t === topics[m[2] as 'state' | 'running'](m[1]!));
    };
    const topicsOf = (cfg: Record<string, unknown>) => {
      const set = new Set<string>();
      for (const c of Object.values((cfg.components ?? cfg.cmps ?? {}) as Record<string, unknown>)) {
        if (c === null || typeof c !== 'object') continue;
        const t = (c as Record<string, unknown>).state_topic ?? (c as Record<string, unknown>).stat_t;
        if (typeof t === 'string' && ours(t)) set.add(t);
      }
      return set;
    };
    const keep = topicsOf(this.o.discovery);
    for (const t of topicsOf(previous)) {
      if (!keep.has(t)) await this.publish(client, t, '', { retain: true });
    }
  }

  private async publishStates(client: MqttClient): Promise<void> {
    const running = this.o.runner.status().running?.target;
    for (const t of this.o.runner.targets) {
      await this.publish(client, this.o.topics.running(t.id), t.id === running ? 'ON' : 'OFF', {
        retain: true,
      });
    }
    for (const run of this.o.store.latest()) {
      const id = run.result.target.id;
      const ours =
        this.o.runner.targets.some((t) => t.id === id) || (this.o.inbound && id === INBOUND_TARGET);
      if (!ours) continue;
      await this.publish(
        client,
        this.o.topics.state(run.result.target.id),
        JSON.stringify(targetState(run.result, run.id, this.lastOk(run.result))),
        {
          retain: true,
        },
      );
    }
  }

  /**
   * Publishes every stored run not yet published, oldest first; each is marked once its event is acked.
   * Runs older than a week (MQTT was off, or the broker away that long) are marked without an event: HA
   * would take them as news, and they stay in the history and on the page.
   */
  private async flush(client: MqttClient): Promise<void> {
    const horizon = new Date(Date.now() - REPLAY_MAX_AGE_MS).toISOString();
    let skipped = 0;
    for (;;) {
      const batch = this.o.store.unpublished(100);
      if (!batch.length) break;
      for (const run of batch) {
        if (run.result.finished_at < horizon) {
          this.o.store.markPublished(run.id);
          skipped++;
          continue;
        }
        // Marked on the event's PUBACK, before the retained state goes out: a connection lost between
        // the two must not send the event again (HA would fire its automations twice); the state is
        // re-sent from the store on the next connect anyway (publishStates).
        await this.publishRun(client, run.result, run.id, () => {
          this.o.store.markPublished(run.id);
          this.stats.published_runs++;
        });
      }
    }
    if (skipped) this.o.log?.info({ skipped }, 'runs older than a week not replayed as events');
  }

  /** The run's event, then its retained state; `onEvent` runs once the broker has acked the event. */
  private async publishRun(
    client: MqttClient,
    r: RunResult,
    id: number | undefined,
    onEvent?: () => void,
  ): Promise<void> {
    const t = r.target.id;
    await this.publish(client, this.o.topics.event(t), JSON.stringify(runEvent(r, id)));
    onEvent?.();
    await this.publish(client, this.o.topics.state(t), JSON.stringify(targetState(r, id, this.lastOk(r))), {
      retain: true,
    });
  }

  /** For a skipped run: the target's last measurement, whose figures the state keeps. */
  private lastOk(r: RunResult): RunResult | undefined {
    if (r.status !== 'skipped') return undefined;
    try {
      return this.o.store.lastOk(r.target.id)?.result;
    } catch {
      // a damaged history: the skipped state shows no figures rather than failing the publish
      return undefined;
    }
  }

  private onRunner(e: RunnerEvent): void {
    const client = this.client;
    if (!client || !this.connected) return;
    if (e.type === 'started') this.setRunning(client, e.target, 'ON');
    if (e.type === 'finished') {
      this.setRunning(client, e.target, 'OFF');
      if (e.run_id === undefined) {
        // not stored (disk full): publish it once now, nothing to replay later
        void this.enqueue(() => this.publishRun(client, e.result, undefined));
      } else void this.enqueue(() => this.flush(client));
    }
    if (e.type === 'inbound') {
      if (e.run_id === undefined) void this.enqueue(() => this.publishRun(client, e.result, undefined));
      else void this.enqueue(() => this.flush(client));
    }
  }

  private setRunning(client: MqttClient, target: string, v: OnOff): void {
    void this.enqueue(() => this.publish(client, this.o.topics.running(target), v, { retain: true }));
  }

  private onMessage(topic: string, payload: Buffer, retain: boolean): void {
    const { topics } = this.o;
    if (topic === topics.discovery) {
      if (retain) this.brokerConfig = payload.length ? payload.toString() : undefined;
      this.retainedSeen?.();
      return;
    }
    if (topic === this.o.birthTopic) {
      if (payload.toString() !== 'online') return;
      // §4: HA restarted; after a small random delay re-send discovery and states.
      const [lo, hi] = this.o.birthDelayMs ?? [1000, 5000];
      clearTimeout(this.birthTimer);
      this.birthTimer = setTimeout(
        () => {
          const client = this.client;
          if (!client || !this.connected) return;
          this.o.log?.info('Home Assistant is online: re-announcing');
          void this.enqueue(async () => {
            await this.announce(client, true);
            await this.publishStates(client);
          });
        },
        lo + Math.random() * (hi - lo),
      );
      return;
    }
    const target = topics.commandTarget(topic);
    if (target === undefined) return;
    // Commands are tiny; whatever else arrives is never logged whole (a 20 MB payload was).
    if (payload.length > MAX_COMMAND_BYTES) {
      this.refuse({ topic: topic.slice(0, 200), bytes: payload.length }, 'run command too large, ignored');
      return;
    }
    const text = payload.toString().trim();
    const which = target === 'all' && text && text !== 'all' && text !== PAYLOAD_RUN ? text : target;
    if (which !== 'all' && !TARGET_ID.test(which)) {
      this.refuse({ target: preview(which) }, 'run command for a malformed target id, ignored');
      return;
    }
    try {
      const queued = this.o.runner.enqueue(which, 'mqtt');
      this.o.log?.info({ target: which, queued }, 'run requested over MQTT');
    } catch (err) {
      this.refuse({ target: which, err: (err as Error).message }, 'run request refused');
    }
  }

  /** A bad command, logged within the budget (5 a minute), with a count of those left unlogged. */
  private refuse(fields: Record<string, unknown>, msg: string): void {
    const b = this.badCommands.take();
    if (b.suppressed)
      this.o.log?.warn({ suppressed: b.suppressed }, 'bad run commands over MQTT were not logged (budget)');
    if (b.log) this.o.log?.warn(fields, msg);
  }

  /** Marks the probe offline (retained) and disconnects; the queue of unpublished runs stays in the store. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.unsubscribe();
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.birthTimer);
    const client = this.client;
    if (!client) return;
    if (this.connected) {
      // A removal's clean-up still waiting is done now, so no stale retained state outlives us.
      if (this.staleClear) void this.enqueue(() => this.runStaleClear(client));
      // Let what is in flight (the aborted run's event) go out first, bounded.
      await Promise.race([this.chain, new Promise((r) => setTimeout(r, 1500))]);
      await this.publish(client, this.o.topics.availability, 'offline', { retain: true }).catch(() => {});
    }
    await Promise.race([client.endAsync(), new Promise((r) => setTimeout(r, 1000))]);
    this.connected = false;
  }
}
