import type { Group, GroupValue } from '../config/fields.js';
import { HOST_PORT } from '../net/hostport.js';
import { dailyQuotaSchema } from '../net/quota.js';

/**
 * The RMBT settings groups: `rmbt` (the client; every RMBT target inherits it and may override any key)
 * and `rmbt_server` (our measurement and control servers).
 */
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

export type RmbtSettings = GroupValue<typeof rmbtSchema>;
export type RmbtServerSettings = GroupValue<typeof rmbtServerSchema>;
