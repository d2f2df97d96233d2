import type { Command } from '../cli/command.js';
import type { Group } from '../config/fields.js';
import type { GeneralSettings } from '../config/schema.js';
import type { Engine } from '../engine/types.js';
import type { Logger } from '../log.js';
import type { InboundReport } from '../measure/inbound.js';
import type { RunResult } from '../measure/result.js';
import type { Quota } from '../net/quota.js';

/**
 * The contract every protocol implements (docs/internals.md "Adding a protocol"). A protocol is one
 * folder under src/ that exports one descriptor; src/protocols/registry.ts lists them. The runner, the
 * settings, MQTT discovery, the CLI, the page and the metrics read what they need from the descriptor
 * and never test a protocol's name.
 *
 * A descriptor is light: its module imports settings schemas and small functions only. The client, the
 * server and the CLI's bulk (`measure`, `server.start`, command bodies) are loaded with `await import()`
 * when first used, so a protocol no target uses never enters memory.
 */

/** The phases of a run whose latency under load a target measures (btest `both` loads both ways at once). */
export type LatencyPhase = 'download' | 'upload' | 'both';

/** What a protocol's measure() gets from the runner (or a CLI command). */
export interface MeasureCtx {
  engine: Engine;
  general: GeneralSettings;
  /** the target's id (results and logs carry it) */
  targetId?: string;
  log?: Logger;
  signal?: AbortSignal;
  /** set for runs nobody asked for just now (a schedule, the service's start): how often they repeat */
  automated?: { everyMin: number };
  onPhase?: (phase: string) => void;
  onProgress?: (direction: 'download' | 'upload', mbps: number) => void;
}

/** Which of the per-target figures a target's runs can hold: only those get entities, page figures. */
export interface Measures {
  ping: boolean;
  jitter: boolean;
  /** UDP loss */
  loss: boolean;
  latency: readonly LatencyPhase[];
  /** figures of the protocol's own (RunResult.figures), each an entity */
  figures?: readonly FigureSpec[];
}

/** A figure of a protocol's own, as Home Assistant shows it (a sensor; numeric when it has a unit). */
export interface FigureSpec {
  /** its key in RunResult.figures and in the entity ids */
  key: string;
  label: string;
  unit?: string;
  device_class?: string;
  precision?: number;
  icon?: string;
  /** a diagnostic entity (the device page's diagnostic group) */
  diagnostic?: boolean;
}

/** One of our servers, running inside `serve` (or a `server` command). */
export interface RunningServer<H = unknown> {
  /** the protocol's own server object (ports, keys, certificates; tests reach it through Inbound) */
  readonly handle: H;
  /** what api/status shows under `served.<type>` (ports, counters) */
  status(): Record<string, unknown>;
  /** tests served since the start, and refusals by reason (the served_* metrics) */
  counters(): { sessions: number; refused: Record<string, number> };
  close(): Promise<void>;
}

export interface ServerStartOptions {
  general: GeneralSettings;
  engine: Engine;
  log?: Logger;
  quota: Quota;
  /** each test a peer ran, as the server saw it (stored as an inbound run) */
  onTest: (r: InboundReport) => void;
  /** every listener on a free port (tests) */
  ephemeralPorts?: boolean;
}

export interface ServerSpec<SS, H = unknown> {
  /** its settings group (one of `groups`), e.g. `rmbt_server` */
  readonly group: string;
  /** the inbound kind of its tests in the history, e.g. `rmbt-server` */
  readonly kind: string;
  /** its inbound tests can hold a UDP loss figure (an `inbound_loss` entity) */
  readonly loss: boolean;
  enabled(s: SS): boolean;
  start(s: SS, o: ServerStartOptions): Promise<RunningServer<H>>;
}

/** The built-in loopback target a fresh install measures: our own server on 127.0.0.1. */
export interface SelfTest {
  /** the target as a user would write it in the options file */
  target: Record<string, unknown>;
  close(): Promise<void>;
}

export type Groups = Readonly<Record<string, Group>>;

export interface ProtocolDescriptor<
  T extends string = string,
  S = unknown,
  SS = unknown,
  H = unknown,
  G extends Groups = Groups,
> {
  /** the target `type` and the name of the client's settings group */
  readonly type: T;
  /** how people call it (page, CLI): "RMBT", "MikroTik btest" */
  readonly label: string;
  /** what a target of this type measures against, for the `type` setting's description */
  readonly peerText: string;
  /** the short name beside a served test: "RMBT", "btest" */
  readonly short: string;
  /** its settings groups in the order the options file, config.yaml and DOCS list them */
  readonly groups: G;
  /** what a target of this type must set, else the message (keyed as `targets[i].<key>`) */
  needs(s: S): { key: string; message: string } | undefined;
  /**
   * A rule of the servers a target uses about how often it may run, else undefined: `gapMin` is the
   * shortest gap in minutes between two scheduled runs (its interval, or its cron's closest runs).
   */
  scheduleProblem?(s: S, gapMin: number): string | undefined;
  /** the schedule a target of this type gets when it sets neither interval nor schedule: random gaps */
  defaultSchedule?(s: S): { meanMin: number; minMin: number; maxMin: number } | undefined;
  /** where the idle latency probe connects before a run: the first server the run talks to */
  peer(s: S): { host: string; port: number } | undefined;
  measures(s: S): Measures;
  /** one measurement; failures are results (status failed, a coded error), never throws */
  measure(s: S, ctx: MeasureCtx): Promise<RunResult>;
  /** the CLI summary: what stands in brackets after the server, and lines before the status */
  summary?: { server?(r: RunResult): string | undefined; lines?(r: RunResult): string[] };
  readonly server?: ServerSpec<SS, H>;
  /** the server a fresh install measures when no target is configured (one protocol offers it) */
  selfTest?(ss: SS, o: { general: GeneralSettings; engine: Engine; log: Logger }): Promise<SelfTest>;
  /** its CLI commands (`measure <type>`, `server <type>`, …) */
  readonly commands?: Readonly<Record<string, Command>>;
  /** the add-on's texts: each settings group's name and description, and the container ports it maps */
  readonly addon?: {
    groups: Readonly<Record<string, readonly [string, string]>>;
    ports?: Readonly<Record<string, string>>;
  };
  /** its page module under public/protocols/ (labels, served-server line, setup examples) */
  readonly page: string;
}

/** A descriptor with its settings types erased, as the registry hands them to protocol-neutral code. */
// biome-ignore lint/suspicious/noExplicitAny: the registry's list holds descriptors of different settings types
export type AnyProtocol = ProtocolDescriptor<string, any, any, any, any>;

/** The part of a MeasureCtx every protocol's client takes as it is (engine, settings, abort, ids, log). */
export function baseCtx(
  ctx: MeasureCtx,
): Pick<MeasureCtx, 'engine' | 'general' | 'signal' | 'targetId' | 'log'> {
  return {
    engine: ctx.engine,
    general: ctx.general,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.targetId ? { targetId: ctx.targetId } : {}),
    ...(ctx.log ? { log: ctx.log } : {}),
  };
}
