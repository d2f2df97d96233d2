import type { Group, GroupValue } from '../config/fields.js';
import { HOST_PORT } from '../net/hostport.js';
import { dailyQuotaSchema } from '../net/quota.js';

/** M-Lab's Locate API v2: the nearest ndt7 servers, no key needed (research/public-servers.md §1.4). */
export const MLAB_LOCATE_URL = 'https://locate.measurementlab.net/v2/nearest/ndt/ndt7';
/** M-Lab's privacy policy: what consent to its data policy agrees to. */
export const MLAB_PRIVACY_URL = 'https://www.measurementlab.net/privacy/';

/**
 * The ndt7 settings groups: `ndt7` (the client; every ndt7 target inherits it and may override any key)
 * and `ndt7_server` (our ndt7 server, for LAN devices and M-Lab's own browser client).
 */
export const ndt7Schema = {
  server: {
    type: 'str',
    optional: true,
    pattern: HOST_PORT,
    patternHint: 'host or host:port (IPv6 in brackets); the port defaults to 443 for wss, 80 for ws',
    description:
      "Your own ndt7 server (host:port). Empty: M-Lab's nearest public server, found through locate_url right before each run.",
  },
  locate_url: {
    type: 'str',
    default: MLAB_LOCATE_URL,
    pattern: /^https?:\/\/\S+$/,
    patternHint: 'an http:// or https:// URL',
    description: "Where to ask for the nearest ndt7 servers when server is empty (M-Lab's Locate API v2).",
  },
  scheme: {
    type: 'enum',
    values: ['wss', 'ws'],
    default: 'wss',
    description: 'WebSocket over TLS (wss, what M-Lab serves by default) or plain (ws).',
  },
  accept_data_policy: {
    type: 'bool',
    default: false,
    description: `Consent to M-Lab's data policy, needed for M-Lab's servers: M-Lab publishes every result together with your public IP address as open data and keeps it indefinitely (${MLAB_PRIVACY_URL}). Your own server needs no consent.`,
  },
  direction: {
    type: 'enum',
    values: ['both', 'download', 'upload'],
    default: 'both',
    description: 'Run the download test, the upload test, or both (one after the other).',
  },
  early_exit: {
    type: 'bool',
    default: false,
    description:
      'Ask the server to end the download after 250 MB (for a line with a data cap; M-Lab honours it).',
  },
  loaded_latency: {
    type: 'bool',
    default: true,
    description:
      "Measure latency under load: TCP connects to the server's port before the test (idle), the server's own round-trip figure during the download and TCP connects during the upload.",
  },
  ca: {
    type: 'str',
    optional: true,
    description:
      'PEM file with a CA or self-signed certificate of your own server, trusted besides the system ones.',
  },
  tls_insecure: {
    type: 'bool',
    default: false,
    description: "Accept any TLS certificate from your own server (never used for M-Lab's servers).",
  },
  ip_version: {
    type: 'enum',
    values: ['any', '4', '6'],
    default: 'any',
    description: 'Use IPv4 only, IPv6 only, or what the name resolves to first.',
  },
  io_timeout: {
    type: 'float',
    default: 7,
    min: 1,
    max: 60,
    description:
      'Seconds to wait for the connection, the handshake or any data before the test fails (7: what M-Lab’s Go client waits).',
  },
} as const satisfies Group;

export const ndt7ServerSchema = {
  enabled: {
    type: 'bool',
    default: false,
    description:
      "Run our ndt7 server inside the service, so a LAN device or a browser running M-Lab's ndt7 client can test to this one; its tests show as inbound runs. The server ndt7 command runs it whatever this says.",
  },
  bind: { type: 'str', default: '0.0.0.0', description: 'Address the ndt7 server listens on.' },
  port: {
    type: 'int',
    default: 8090,
    min: 0,
    max: 65535,
    description: 'TCP port for ndt7 over plain WebSocket (ws://host:port/ndt/v7/download).',
  },
  tls_port: {
    type: 'int',
    default: 0,
    min: 0,
    max: 65535,
    description:
      'TCP port for ndt7 over TLS (wss://); 0 = none. Uses cert, or a self-signed certificate made in data_dir.',
  },
  cert: { type: 'str', optional: true, description: 'PEM certificate (chain) for tls_port.' },
  cert_key: { type: 'str', optional: true, description: 'PEM private key for cert.' },
  max_sessions: {
    type: 'int',
    default: 4,
    min: 1,
    max: 100,
    description: 'Tests served at once; more are refused with 503.',
  },
  ...dailyQuotaSchema,
} as const satisfies Group;

export type Ndt7Settings = GroupValue<typeof ndt7Schema>;
export type Ndt7ServerSettings = GroupValue<typeof ndt7ServerSchema>;
