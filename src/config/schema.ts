import { LOG_LEVELS } from '../log.js';
import type { Group, GroupValue } from './fields.js';
import type { TargetSettings } from './targets.js';

/**
 * The single settings schema. Groups map to sections of the options file and to the flags of one CLI
 * command: `general` everywhere, `rmbt` for `measure rmbt`, `rmbt_server` for `server rmbt`.
 */
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

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

export const rmbtSchema = {
  control_url: {
    type: 'str',
    optional: true,
    pattern: /^https?:\/\/\S+$/,
    patternHint: 'an http:// or https:// URL such as https://host/RMBTControlServer',
    description: 'RMBT control server base URL. Either this or server+key.',
  },
  control_api: {
    type: 'enum',
    values: ['open-rmbt', 'specure'],
    default: 'open-rmbt',
    description:
      "The control server's API: open-rmbt (RTR-Netztest and its forks) or specure (Specure's ONT platform, e.g. Nettfart: calls under /mobile/).",
  },
  control_headers: {
    type: 'str',
    optional: true,
    maxLength: 1024,
    pattern: /^\s*[A-Za-z0-9-]+\s*:[^;\r\n]*(;\s*[A-Za-z0-9-]+\s*:[^;\r\n]*)*;?\s*$/,
    patternHint: 'Name: value pairs separated by ; such as "X-Nettest-Client: nt"',
    description:
      'Extra HTTP headers for every control server call, as "Name: value" pairs separated by ";" (Specure deployments need their tenant in X-Nettest-Client).',
  },
  server: {
    type: 'str',
    optional: true,
    pattern: HOST_PORT,
    patternHint: 'host or host:port (IPv6 in brackets)',
    description: 'Measurement server for direct mode (no control server), as host:port.',
  },
  key: {
    type: 'str',
    optional: true,
    secret: true,
    maxLength: 1024,
    description:
      "Direct mode: the measurement server's shared secret; the probe signs its own token with it.",
  },
  transport: {
    type: 'enum',
    values: ['auto', 'plain', 'tls', 'http', 'https', 'ws', 'wss'],
    default: 'auto',
    description:
      'plain/tls: legacy RMBT, http/https: HTTP Upgrade (RMBThttp), ws/wss: WebSocket (RMBTws). ' +
      'auto: what the control server says, or https in direct mode.',
  },
  port: {
    type: 'int',
    optional: true,
    min: 1,
    max: 65535,
    description: 'Override the measurement server port the control server announces.',
  },
  threads: {
    type: 'int',
    default: 0,
    min: 0,
    max: 20,
    description: '0 picks the thread count from the pre-test (up to what the server allows); 1–20 forces it.',
  },
  duration: {
    type: 'int',
    default: 7,
    min: 1,
    max: 30,
    description:
      'Seconds of download and of upload (direct mode; a control server sets its own, which measure rmbt --duration overrides). With bytes set, the longest a direction may take.',
  },
  bytes: {
    type: 'int',
    default: 0,
    min: 0,
    max: 1e12,
    description:
      'Direct mode: move this many payload bytes each way (GETCHUNKS and a PUT of as many chunks, over the threads) instead of a timed test, for a line with a data cap; the pre-test and pings add a little. 0 = by time.',
  },
  pretest_duration: {
    type: 'float',
    default: 2,
    min: 0.1,
    max: 10,
    description: 'Seconds of each pre-test, which picks chunk size and thread count.',
  },
  pings: {
    type: 'int',
    default: 10,
    min: 1,
    max: 200,
    description: 'Minimum number of pings (direct mode; a control server sets its own).',
  },
  ping_duration: {
    type: 'float',
    default: 1,
    min: 0,
    max: 10,
    description: 'Minimum seconds the ping phase lasts (the spec asks for at least 1).',
  },
  loaded_latency: {
    type: 'bool',
    default: true,
    description:
      'Measure latency under load: PINGs on one extra connection every 100 ms and a TCP connect every second while the download and the upload run.',
  },
  ip_version: {
    type: 'enum',
    values: ['any', '4', '6'],
    default: 'any',
    description: 'Use IPv4 only, IPv6 only, or whatever the name resolves to first.',
  },
  source_address: {
    type: 'str',
    optional: true,
    description: 'Local address or interface name to send from (an interface uses its first address).',
  },
  submit_results: {
    type: 'bool',
    default: true,
    description: 'Send the result to the control server (as the RMBT protocol expects). Off keeps it local.',
  },
  client_uuid_file: {
    type: 'str',
    optional: true,
    description:
      'Where the client UUIDs the control servers assign are kept (default: data_dir/rmbt-client-uuid.json).',
  },
  accept_terms: {
    type: 'bool',
    default: false,
    description:
      "Tell the control server you accepted the deployment's terms and conditions (public servers require it).",
  },
  tls_insecure: {
    type: 'bool',
    default: false,
    description:
      "Accept any TLS certificate from the control server (a self-signed LAN control server). The measurement server's is governed by measurement_tls_verify.",
  },
  measurement_tls_verify: {
    type: 'bool',
    default: false,
    description:
      "Verify the measurement server's TLS certificate. Off by RMBT convention: the signed token authenticates the test, and every reference client trusts any certificate there.",
  },
  trust_result_url: {
    type: 'bool',
    default: false,
    description:
      "Post results to the control server's result_url even when it is on another scheme or host than the control server.",
  },
  network_type: {
    type: 'enum',
    values: ['auto', 'lan', 'ethernet', 'wlan'],
    default: 'auto',
    description:
      'What the result tells the operator about the access network: auto reads the interface the test used (Ethernet, WLAN, else LAN).',
  },
  loop_mode: {
    type: 'bool',
    default: true,
    description:
      'Mark scheduled runs as loop-mode (automated) tests to the control server, as its operators ask; manual runs are never marked.',
  },
  tls_ca: {
    type: 'str',
    optional: true,
    description: 'PEM file with a CA or self-signed certificate to trust in addition to the system ones.',
  },
  io_timeout: {
    type: 'float',
    default: 10,
    min: 1,
    max: 120,
    description: 'Seconds to wait for any answer or any data before the run fails as stalled.',
  },
} as const satisfies Group;

/** The daily budgets both our servers take (issue 18; src/util/quota.ts, quotaFrom). */
const dailyQuotaSchema = {
  max_daily_bytes_per_address: {
    type: 'int',
    default: 0,
    min: 0,
    max: 1e15,
    description:
      'Bytes one client address may move (both directions) in a rolling 24 hours; past it its tests are refused, and a running one is ended (0 = no limit).',
  },
  max_daily_tests_per_address: {
    type: 'int',
    default: 0,
    min: 0,
    max: 100000,
    description: 'Tests one client address may begin in a rolling 24 hours; more are refused (0 = no limit).',
  },
  max_daily_bytes: {
    type: 'int',
    default: 0,
    min: 0,
    max: 1e15,
    description:
      'Bytes all clients together may move in a rolling 24 hours, a budget for a metered line (0 = no limit).',
  },
} as const satisfies Group;

export const rmbtServerSchema = {
  enabled: {
    type: 'bool',
    default: false,
    description:
      'Run our RMBT measurement server (and its control server, when control_port is set) inside the service, so other probes can test to this one; their tests show as inbound runs. The server rmbt command runs it whatever this says.',
  },
  bind: {
    type: 'str',
    default: '0.0.0.0',
    description:
      'Address the RMBT servers listen on (0.0.0.0 all IPv4, :: all, 127.0.0.1 this machine only).',
  },
  port: {
    type: 'int',
    default: 8081,
    min: 0,
    max: 65535,
    description: 'Measurement server port for HTTP Upgrade and WebSocket without TLS (0 = off).',
  },
  tls_port: {
    type: 'int',
    default: 8082,
    min: 0,
    max: 65535,
    description: 'Measurement server port for HTTP Upgrade and WebSocket inside TLS (0 = off).',
  },
  plain_port: {
    type: 'int',
    default: 0,
    min: 0,
    max: 65535,
    description: 'Measurement server port for legacy plain RMBT (server speaks first; 0 = off).',
  },
  tls_plain_port: {
    type: 'int',
    default: 0,
    min: 0,
    max: 65535,
    description: 'Measurement server port for legacy plain RMBT inside TLS (0 = off).',
  },
  control_port: {
    type: 'int',
    default: 8080,
    min: 0,
    max: 65535,
    description: 'Port of the minimal control server that hands out tokens (0 = off).',
  },
  public_host: {
    type: 'str',
    optional: true,
    description: 'Host name the control server tells clients to connect to (default: the one they used).',
  },
  secret_key: {
    type: 'str',
    optional: true,
    secret: true,
    maxLength: 1024,
    description:
      'Shared secret for tokens. Without it one is generated and kept in data_dir/rmbt-secret.key.',
  },
  cert: {
    type: 'str',
    optional: true,
    description: 'PEM certificate (chain) for TLS. Without it a self-signed one is made in data_dir.',
  },
  cert_key: {
    type: 'str',
    optional: true,
    description: 'PEM private key for cert.',
  },
  max_connections: {
    type: 'int',
    default: 64,
    min: 1,
    max: 10000,
    description:
      'Measuring connections (past a valid token) served at once; more get ERR BUSY. Connections still in their handshake are capped apart (4 × this, at least 256, oldest dropped first; 64 per address).',
  },
  max_connections_per_token: {
    type: 'int',
    default: 0,
    min: 0,
    max: 10000,
    description:
      'Measuring connections one token may hold at once; 0 = the threads our control server granted + 1, or 21 for tokens it did not issue.',
  },
  max_connections_per_address: {
    type: 'int',
    default: 32,
    min: 1,
    max: 10000,
    description: 'Measuring connections one client address may hold at once; more get ERR BUSY.',
  },
  max_duration: {
    type: 'int',
    default: 30,
    min: 1,
    max: 30,
    description: 'Longest GETTIME a client may ask for, in seconds.',
  },
  idle_timeout: {
    type: 'float',
    default: 30,
    min: 1,
    max: 600,
    description: 'Seconds a connection may stay silent before it is closed.',
  },
  handshake_timeout: {
    type: 'float',
    default: 10,
    min: 1,
    max: 120,
    description:
      'Seconds a new connection has to present a valid token (TLS and HTTP upgrade included) before it is closed.',
  },
  test_duration: {
    type: 'int',
    default: 7,
    min: 1,
    max: 30,
    description: 'Test duration the control server hands out.',
  },
  test_threads: {
    type: 'int',
    default: 3,
    min: 1,
    max: 20,
    description: 'Thread limit the control server hands out.',
  },
  test_pings: {
    type: 'int',
    default: 10,
    min: 1,
    max: 200,
    description: 'Ping count the control server hands out.',
  },
  encryption: {
    type: 'bool',
    default: true,
    description: 'Whether the control server sends clients to the TLS port (when it is on).',
  },
  ...dailyQuotaSchema,
} as const satisfies Group;

export const btestSchema = {
  host: {
    type: 'str',
    optional: true,
    pattern: HOST_PORT,
    patternHint: 'host or host:port (IPv6 in brackets); the port defaults to 2000',
    description:
      'btest server to measure against: a MikroTik router (/tool bandwidth-server) or any btest server.',
  },
  user: {
    type: 'str',
    optional: true,
    maxLength: 32,
    description: 'User name for the btest server (empty: no authentication).',
  },
  password: {
    type: 'str',
    optional: true,
    secret: true,
    maxLength: 256,
    description: 'Password for the btest server.',
  },
  protocol: { type: 'enum', values: ['tcp', 'udp'], default: 'tcp', description: 'TCP or UDP test.' },
  direction: {
    type: 'enum',
    values: ['receive', 'send', 'both'],
    default: 'receive',
    description:
      "From this probe's point of view: receive (download from the server), send (upload), or both at once.",
  },
  connections: {
    type: 'int',
    default: 1,
    min: 1,
    max: 20,
    description: 'TCP connections (multi-connection test with session token).',
  },
  duration: {
    type: 'int',
    default: 10,
    min: 1,
    max: 300,
    description:
      'Seconds the test runs (btest has no stop message; the probe closes). With bytes set, the longest it may run.',
  },
  bytes: {
    type: 'int',
    default: 0,
    min: 0,
    max: 1e12,
    description:
      'TCP: end the test once this many payload bytes moved in each direction it runs (receive: what arrived; send and both: what this probe sent), for a line with a data cap; 0 = by time only. The server may have a few more in flight when the probe closes.',
  },
  local_tx_speed: {
    type: 'int',
    default: 0,
    min: 0,
    max: 4294967295,
    description:
      'bit/s this probe sends at (0 = unlimited: TCP as fast as it goes, UDP adapts to what arrives).',
  },
  remote_tx_speed: {
    type: 'int',
    default: 0,
    min: 0,
    max: 4294967295,
    description: 'bit/s the server should send at (0 = unlimited).',
  },
  udp_size: {
    type: 'int',
    default: 1500,
    min: 28,
    max: 64000,
    description:
      'UDP packet size as RouterOS means it: the IP packet size (payload = size − 28 on IPv4, − 48 on IPv6).',
  },
  random_data: { type: 'bool', default: false, description: 'Ask for random payload instead of zeros.' },
  loaded_latency: {
    type: 'bool',
    default: true,
    description:
      'Measure latency under load: btest has no ping, so a TCP connect to the btest port every 200 ms during the transfer (5 before it, once the server has greeted, for the idle figure).',
  },
  ip_version: {
    type: 'enum',
    values: ['any', '4', '6'],
    default: 'any',
    description: 'Use IPv4 only, IPv6 only, or what the name resolves to first.',
  },
  io_timeout: {
    type: 'float',
    default: 10,
    min: 1,
    max: 120,
    description: 'Seconds to wait for any answer during the handshake.',
  },
} as const satisfies Group;

export const btestServerSchema = {
  enabled: {
    type: 'bool',
    default: false,
    description:
      'Run our btest server inside the service, so a MikroTik router (/tool bandwidth-test) or another btest client can test to it; its tests show as inbound runs. The server btest command runs it whatever this says.',
  },
  bind: { type: 'str', default: '0.0.0.0', description: 'Address the btest server listens on.' },
  port: {
    type: 'int',
    default: 2000,
    min: 1,
    max: 65535,
    description: 'TCP port of the btest server (2000 is the protocol default).',
  },
  udp_port_start: {
    type: 'int',
    default: 2001,
    min: 1024,
    max: 65000,
    description: 'First UDP port handed out for UDP tests (clients use it + 256).',
  },
  udp_port_count: {
    type: 'int',
    default: 0,
    min: 0,
    max: 60000,
    description:
      'How many UDP ports from udp_port_start are handed out, one per UDP test in turn (0 = max_sessions of them; the add-on maps 2001–2004/udp, enough for the default 4).',
  },
  auth: {
    type: 'enum',
    values: ['ecsrp5', 'md5', 'none'],
    default: 'ecsrp5',
    description:
      'Authentication: ecsrp5 (RouterOS ≥ 6.43 clients), md5 (older ones), none (open to anyone who can reach the port).',
  },
  user: { type: 'str', default: 'btest', maxLength: 32, description: 'User name clients log in with.' },
  password: {
    type: 'str',
    optional: true,
    secret: true,
    maxLength: 256,
    description: 'Password; required unless auth is none.',
  },
  max_sessions: {
    type: 'int',
    default: 4,
    min: 1,
    max: 100,
    description:
      'Authenticated tests served at once; more are refused (auth-failed reply). Handshakes in progress are capped apart (16 × this, at least 64, oldest dropped first).',
  },
  max_duration: {
    type: 'int',
    default: 300,
    min: 1,
    max: 86400,
    description: 'Seconds a test may run before the server ends it.',
  },
  max_bytes: {
    type: 'int',
    default: 0,
    min: 0,
    max: 1e15,
    description: 'Bytes a test may move before the server ends it (0 = no limit).',
  },
  ...dailyQuotaSchema,
  handshake_timeout: {
    type: 'float',
    default: 10,
    min: 1,
    max: 120,
    description: 'Seconds a client has, in all, to send its command and finish authentication or its join.',
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

export const settingsSchema = {
  general: generalSchema,
  rmbt: rmbtSchema,
  rmbt_server: rmbtServerSchema,
  btest: btestSchema,
  btest_server: btestServerSchema,
  service: serviceSchema,
  mqtt: mqttSchema,
  web: webSchema,
} as const;

export type GroupName = keyof typeof settingsSchema;
export type GeneralSettings = GroupValue<typeof generalSchema>;
export type RmbtSettings = GroupValue<typeof rmbtSchema>;
export type RmbtServerSettings = GroupValue<typeof rmbtServerSchema>;
export type BtestSettings = GroupValue<typeof btestSchema>;
export type BtestServerSettings = GroupValue<typeof btestServerSchema>;
export type ServiceSettings = GroupValue<typeof serviceSchema>;
export type MqttSettings = GroupValue<typeof mqttSchema>;
export type WebSettings = GroupValue<typeof webSchema>;

export interface Settings {
  readonly general: GeneralSettings;
  readonly rmbt: RmbtSettings;
  readonly rmbt_server: RmbtServerSettings;
  readonly btest: BtestSettings;
  readonly btest_server: BtestServerSettings;
  readonly service: ServiceSettings;
  readonly mqtt: MqttSettings;
  readonly web: WebSettings;
  /** measurement targets of `serve` (the options file's `targets` list; env BANDWIDTH_PROBE_TARGETS as JSON) */
  readonly targets: readonly TargetSettings[];
}
