import { LOG_LEVELS } from '../log.js';
import { HOST_PORT } from '../net/hostport.js';
import type { Group, GroupValue } from './fields.js';

/**
 * The protocol-neutral settings groups: the top-level keys, the service, MQTT and the page. Each
 * protocol's groups live in its folder (src/<type>/settings.ts); src/config/settings.ts puts them
 * together into the single schema.
 */

export const generalSchema = {
  log_level: {
    type: 'enum',
    values: LOG_LEVELS,
    default: 'info',
    description: 'How much the probe logs (on stderr, in the form log_format sets).',
  },
  log_format: {
    type: 'enum',
    values: ['auto', 'json', 'pretty'],
    default: 'auto',
    description:
      'Log lines: pretty (one readable line each, with time, level and fields) or json (one JSON object each, for log collectors); auto is pretty on a terminal and in the add-on, json otherwise.',
  },
  syslog: {
    type: 'str',
    optional: true,
    pattern: HOST_PORT,
    patternHint: 'host or host:port (IPv6 in brackets); the port defaults to 514',
    description:
      'Also send the log to this syslog collector over UDP (host:port, port 514 if left out), e.g. a NAS or the router.',
  },
  syslog_format: {
    type: 'enum',
    values: ['rfc5424', 'rfc3164'],
    default: 'rfc5424',
    description:
      'Syslog message format: rfc5424 (structured, with the year) or rfc3164 (BSD, what older collectors expect).',
  },
  data_dir: {
    type: 'str',
    default: 'data',
    description: 'Folder for persistent state: client UUIDs, generated keys and certificates, the history.',
  },
  run_as: {
    type: 'str',
    optional: true,
    maxLength: 64,
    pattern: /^([a-z_][a-z0-9_-]*|\d+(:\d+)?)$/,
    patternHint: 'a user name, or uid[:gid]',
    description:
      'serve: when started as root, hand data_dir to this user and drop root before anything is opened (where Node allows it; the add-on image drops root in its run script instead).',
  },
  engine: {
    type: 'enum',
    values: ['auto', 'native', 'js'],
    default: 'auto',
    description:
      'Measurement engine: auto uses the native loop when it loads and the JavaScript one otherwise.',
  },
} as const satisfies Group;

export const serviceSchema = {
  publish_self_test: {
    type: 'bool',
    default: false,
    description:
      'With no targets the probe measures its own loopback servers (a self-test of this machine, not your line). Publish those results to Home Assistant too (off: the page shows them, HA gets nothing, so its statistics are not seeded with loopback speeds).',
  },
  timezone: {
    type: 'str',
    optional: true,
    pattern: /^[A-Za-z0-9_+\-/]{1,64}$/,
    patternHint: 'an IANA time zone name such as Europe/Vienna',
    description:
      "Time zone of the cron schedules (an IANA name such as Europe/Vienna). Default: the TZ environment variable (the add-on gets Home Assistant's time zone from the Supervisor), else UTC.",
  },
  run_on_start: {
    type: 'bool',
    default: false,
    description:
      'Run every enabled target once when the service starts (otherwise the first run waits for its schedule).',
  },
  run_timeout: {
    type: 'int',
    default: 300,
    min: 30,
    max: 3600,
    description: 'Seconds a run may take before it is aborted and stored as failed (BP_ERR_RUN_TIMEOUT).',
  },
  retention_days: {
    type: 'int',
    default: 365,
    min: 1,
    max: 3650,
    description: 'Days of run history kept in the database; older runs are deleted once a day.',
  },
  reset_corrupt_db: {
    type: 'bool',
    default: false,
    description:
      'When the history database is found damaged at start: keep it aside as <file>.corrupt-<time> and start a fresh one (off: leave it untouched and keep runs in memory until it is repaired).',
  },
  busy_check: {
    type: 'enum',
    values: ['postpone', 'flag', 'off'],
    default: 'postpone',
    description:
      'Before a run, look for cross traffic: postpone the run while the line looks busy (bounded retries, then ' +
      'run and flag it link_busy), flag only, or do not check.',
  },
  busy_traffic: {
    type: 'float',
    default: 5,
    min: 0,
    max: 100000,
    description:
      'Mbit/s of traffic on the interface (either direction) in the second before a run that counts as busy (0 = ignore traffic).',
  },
  busy_rtt: {
    type: 'float',
    default: 20,
    min: 0,
    max: 10000,
    description:
      "Milliseconds of extra round-trip time over the target's recent minimum that count as busy (0 = ignore latency).",
  },
  busy_retries: {
    type: 'int',
    default: 3,
    min: 0,
    max: 20,
    description: 'How often a busy run is postponed before it runs anyway (flagged link_busy).',
  },
  busy_retry_delay: {
    type: 'int',
    default: 120,
    min: 1,
    max: 3600,
    description: 'Seconds between busy-line retries.',
  },
  busy_interface: {
    type: 'str',
    optional: true,
    pattern: /^[A-Za-z0-9_.:@-]{1,15}$/,
    patternHint: 'a network interface name such as eth0',
    description: 'Interface whose byte counters are sampled (default: the one holding the default route).',
  },
  cpu_limit: {
    type: 'float',
    default: 90,
    min: 10,
    max: 100,
    description: "Percent of the machine's CPU during a run above which the run is flagged cpu_limited.",
  },
} as const satisfies Group;

export const mqttSchema = {
  enabled: {
    type: 'enum',
    values: ['auto', 'on', 'off'],
    default: 'auto',
    description:
      'auto: publish when a broker is set (url) or the Supervisor offers one; on: a broker is required; off: never publish.',
  },
  url: {
    type: 'str',
    optional: true,
    pattern: /^mqtts?:\/\/[^\s/@]+(:\d{1,5})?\/?$/,
    patternHint: 'mqtt://host:1883 or mqtts://host:8883 (credentials go in username and password)',
    description: 'Broker URL. Empty: the broker the Home Assistant Supervisor offers (Mosquitto add-on).',
  },
  username: { type: 'str', optional: true, maxLength: 256, description: 'Broker user name.' },
  password: { type: 'str', optional: true, secret: true, maxLength: 1024, description: 'Broker password.' },
  ca: {
    type: 'str',
    optional: true,
    description: 'PEM file with the CA that signed the broker certificate (mqtts:// with your own CA).',
  },
  tls_insecure: {
    type: 'bool',
    default: false,
    description:
      'Accept any broker certificate (mqtts:// only; for a self-signed broker without its CA file).',
  },
  client_id: {
    type: 'str',
    optional: true,
    pattern: /^[A-Za-z0-9_-]{1,64}$/,
    patternHint: 'letters, digits, _ and -, up to 64',
    description: 'MQTT client id (default: the device id, bwprobe_<install id>).',
  },
  discovery_prefix: {
    type: 'str',
    default: 'homeassistant',
    pattern: /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/,
    patternHint: 'a topic prefix without wildcards',
    description: "Home Assistant's discovery prefix (MQTT integration options).",
  },
  birth_topic: {
    type: 'str',
    default: 'homeassistant/status',
    pattern: /^[^#+]+$/,
    patternHint: 'a topic without wildcards',
    description:
      'Where Home Assistant announces online/offline; on online the probe re-announces its entities.',
  },
  base_topic: {
    type: 'str',
    default: 'bandwidth_probe',
    pattern: /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/,
    patternHint: 'a topic prefix without wildcards',
    description: 'Prefix of the probe topics: <base_topic>/<device id>/…',
  },
  device_name: {
    type: 'str',
    default: 'Bandwidth Probe',
    maxLength: 64,
    description: 'Name of the device in Home Assistant (entity names start with it).',
  },
} as const satisfies Group;

export const webSchema = {
  enabled: { type: 'bool', default: true, description: 'Serve the status page, the JSON API and /metrics.' },
  bind: {
    type: 'str',
    optional: true,
    description:
      'Address the page listens on. Unset: 0.0.0.0 behind ingress (the Supervisor must reach it), 127.0.0.1 standalone. Bound wider without credentials, the page asks for a generated API token.',
  },
  port: {
    type: 'int',
    default: 8099,
    min: 0,
    max: 65535,
    description: "Port of the page (8099 is the add-on's ingress port; 0 picks a free one).",
  },
  ingress: {
    type: 'enum',
    values: ['auto', 'on', 'off'],
    default: 'auto',
    description:
      'on: behind Home Assistant ingress, accept only the Supervisor (172.30.32.2); auto: on when running as an add-on.',
  },
  username: {
    type: 'str',
    optional: true,
    maxLength: 64,
    description: 'Standalone: user name for HTTP basic auth on the page and API (with password).',
  },
  password: {
    type: 'str',
    optional: true,
    secret: true,
    maxLength: 256,
    description: 'Standalone: password for HTTP basic auth.',
  },
  api_token: {
    type: 'str',
    optional: true,
    secret: true,
    maxLength: 256,
    description:
      'Standalone: a token API clients send as "Authorization: Bearer <token>" (instead of basic auth).',
  },
  allowed_hosts: {
    type: 'str',
    optional: true,
    maxLength: 1024,
    pattern: /^\s*[A-Za-z0-9.-]+\s*(,\s*[A-Za-z0-9.-]+\s*)*$/,
    patternHint: 'host names separated by commas',
    description:
      "Standalone: host names the page answers to besides IP addresses, localhost and this machine's name (a guard against DNS rebinding), comma-separated.",
  },
  unauthenticated: {
    type: 'bool',
    default: false,
    description:
      'Standalone: serve the page and API without credentials even when bound beyond loopback (logged as a warning at every start).',
  },
  run_limit: {
    type: 'int',
    default: 6,
    min: 1,
    max: 600,
    description:
      'Run requests the page and API accept per minute; more get 429 (a reload storm is not a run storm).',
  },
} as const satisfies Group;

export type GeneralSettings = GroupValue<typeof generalSchema>;
export type ServiceSettings = GroupValue<typeof serviceSchema>;
export type MqttSettings = GroupValue<typeof mqttSchema>;
export type WebSettings = GroupValue<typeof webSchema>;
