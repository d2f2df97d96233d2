import type { WebSettings } from '../config/schema.js';
import type { TargetSettings } from '../config/targets.js';
import type { Logger } from '../log.js';
import type { PublisherStatus } from '../mqtt/publisher.js';
import type { Inbound } from '../runner/inbound.js';
import type { Runner } from '../runner/runner.js';
import type { Scheduler } from '../runner/schedule.js';
import type { Store } from '../store/store.js';

/** What the page, API, live events and metrics are built from. */
export interface WebDeps {
  runner: Runner;
  scheduler: Scheduler;
  store: Store;
  targets: readonly TargetSettings[];
  deviceId: string;
  version: string;
  engine: string;
  mqtt: () => PublisherStatus | undefined;
  settings: WebSettings;
  /** behind HA ingress: only the Supervisor may connect */
  ingress: boolean;
  /** the address the page listens on (a name in Host that equals it is ours) */
  bind?: string;
  /** `api_token` is the generated one: it also opens the page as a basic-auth password */
  tokenAsPassword?: boolean;
  /** most connections the page may hold at once (the descriptor budget, src/engine/fdlimit.ts) */
  maxConnections?: number;
  /** no targets: the only target is the built-in loopback self-test (published: sent to HA as well) */
  selfTest?: { published: boolean } | undefined;
  /** the zone cron schedules are read in */
  timezone?: string;
  /** tests: a shorter header timeout and check interval than the defaults */
  timeouts?: Partial<WebTimeouts>;
  log?: Logger;
  /** our servers inside the service: the Served section, its runs and metrics */
  inbound?: Inbound;
}

/**
 * Timeouts of the page's HTTP server (a thousand half-sent request heads must not be held for minutes).
 * Node checks header/request deadlines every `checkMs`; SSE streams are responses, which these do not
 * cut (they are kept alive by a comment every 15 s, below `idleMs`).
 */
export interface WebTimeouts {
  headersMs: number;
  requestMs: number;
  keepAliveMs: number;
  idleMs: number;
  checkMs: number;
}
