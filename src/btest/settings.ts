import type { Group, GroupValue } from '../config/fields.js';
import { HOST_PORT } from '../net/hostport.js';
import { dailyQuotaSchema } from '../net/quota.js';

/**
 * The btest settings groups: `btest` (the client; every btest target inherits it and may override any key)
 * and `btest_server` (our server for MikroTik routers and btest clients).
 */
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

export type BtestSettings = GroupValue<typeof btestSchema>;
export type BtestServerSettings = GroupValue<typeof btestServerSchema>;
