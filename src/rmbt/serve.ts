import type { GeneralSettings } from '../config/schema.js';
import type { Engine } from '../engine/types.js';
import type { Logger } from '../log.js';
import type { InboundReport } from '../measure/inbound.js';
import { ensureCert, ensureSecret } from '../net/certs.js';
import type { Quota } from '../net/quota.js';
import { quotaFrom } from '../net/quota.js';
import type { RunningServer, ServerStartOptions } from '../protocols/contract.js';
import { ControlServer } from './controlServer.js';
import { type ListenerSpec, RmbtServer } from './server.js';
import type { RmbtServerSettings } from './settings.js';

export interface RunningRmbtServers {
  measurement: RmbtServer;
  control?: ControlServer;
  keys: string[];
  keyPath?: string;
  certPath?: string;
  close(): Promise<void>;
}

/** Starts the measurement server and (when its port is set) the control server from settings. */
export async function startRmbtServers(
  s: RmbtServerSettings,
  general: GeneralSettings,
  engine: Engine,
  log?: Logger,
  opts: { ephemeralPorts?: boolean; quota?: Quota; onTest?: (r: InboundReport) => void } = {},
): Promise<RunningRmbtServers> {
  // 0 means "off" in settings; `ephemeralPorts` binds every enabled listener to a free port instead
  // (the demo and the tests, so they never collide with a running server).
  const portFor = (p: number) => (opts.ephemeralPorts ? 0 : p);
  const specs: ListenerSpec[] = [];
  const add = (port: number, tls: boolean, mode: 'plain' | 'http') => {
    if (port !== 0) specs.push({ port: portFor(port), tls, mode });
  };
  add(s.port, false, 'http');
  add(s.tls_port, true, 'http');
  add(s.plain_port, false, 'plain');
  add(s.tls_plain_port, true, 'plain');
  const needTls = specs.some((l) => l.tls);
  const creds = needTls ? await ensureCert(general.data_dir, s.cert, s.cert_key) : undefined;
  const secret = ensureSecret(general.data_dir, s.secret_key);
  const measurement = new RmbtServer({
    host: s.bind,
    listeners: specs,
    ...(creds ? { tlsCreds: creds } : {}),
    keys: secret.keys,
    maxConnections: s.max_connections,
    maxPerToken: s.max_connections_per_token,
    maxPerAddress: s.max_connections_per_address,
    maxDuration: s.max_duration,
    idleTimeoutMs: s.idle_timeout * 1000,
    handshakeTimeoutMs: s.handshake_timeout * 1000,
    engine,
    quota: opts.quota ?? quotaFrom(s),
    ...(opts.onTest ? { onTest: opts.onTest } : {}),
    ...(log ? { log } : {}),
  });
  try {
    await measurement.start();
  } catch (err) {
    // the listeners bound before the one that failed are let go (serve runs on without this server)
    await measurement.close();
    throw err;
  }
  let control: ControlServer | undefined;
  if (s.control_port !== 0) {
    const pick = (mode: 'plain' | 'http', tls: boolean) => measurement.portOf(mode, tls);
    const ports = {
      plain: pick('plain', false),
      tlsPlain: pick('plain', true),
      http: pick('http', false),
      tls: pick('http', true),
    };
    control = new ControlServer({
      host: s.bind,
      port: portFor(s.control_port),
      key: secret.keys[0]!,
      ...(s.public_host ? { publicHost: s.public_host } : {}),
      ports: Object.fromEntries(Object.entries(ports).filter(([, v]) => v !== undefined)),
      encryption: s.encryption,
      duration: s.test_duration,
      threads: s.test_threads,
      pings: s.test_pings,
      onIssue: (uuid, threads) => measurement.grant(uuid, threads),
      ...(log ? { log } : {}),
    });
    try {
      await control.start();
    } catch (err) {
      await measurement.close();
      throw err;
    }
  }
  return {
    measurement,
    ...(control ? { control } : {}),
    keys: secret.keys,
    ...(secret.path ? { keyPath: secret.path } : {}),
    ...(creds ? { certPath: creds.certPath } : {}),
    async close() {
      await control?.close();
      await measurement.close();
    },
  };
}

/** Our RMBT servers as a server of `serve`: what api/status and the metrics read of them. */
export async function serveRmbt(
  s: RmbtServerSettings,
  o: ServerStartOptions,
): Promise<RunningServer<RunningRmbtServers>> {
  const servers = await startRmbtServers(s, o.general, o.engine, o.log, {
    quota: o.quota,
    onTest: o.onTest,
    ...(o.ephemeralPorts ? { ephemeralPorts: true } : {}),
  });
  return {
    handle: servers,
    status: () => ({
      listeners: servers.measurement.listeners.map((l) => ({ port: l.port, tls: l.tls, mode: l.mode })),
      ...(servers.control ? { control_port: servers.control.port } : {}),
      active_connections: servers.measurement.activeConnections,
      stats: { ...servers.measurement.stats },
    }),
    counters() {
      const r = servers.measurement.stats;
      return {
        sessions: r.sessions,
        refused: {
          quota: r.quota,
          busy: Math.max(0, r.refused - r.quota),
          handshake_timeout: r.handshakeTimeouts,
          session_timeout: r.sessionTimeouts,
          evicted: r.evicted,
        },
      };
    },
    close: () => servers.close(),
  };
}
