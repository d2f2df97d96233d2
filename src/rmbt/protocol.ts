import { splitHostPort, urlHostPort } from '../net/hostport.js';
import { baseCtx, type ProtocolDescriptor } from '../protocols/contract.js';
import { rmbtCommands } from './commands.js';
import type { RunningRmbtServers } from './serve.js';
import { type RmbtServerSettings, type RmbtSettings, rmbtSchema, rmbtServerSchema } from './settings.js';
import { rmbtSummary } from './summary.js';

/**
 * RMBT (open-rmbt: RTR-Netztest, NetMetr, Nettfart): a control server hands out a token and a
 * measurement server, or a measurement server is used directly with its shared key (specs/rmbt.md).
 */
const groups = { rmbt: rmbtSchema, rmbt_server: rmbtServerSchema } as const;

export const rmbtProtocol: ProtocolDescriptor<
  'rmbt',
  RmbtSettings,
  RmbtServerSettings,
  RunningRmbtServers,
  typeof groups
> = {
  type: 'rmbt',
  label: 'RMBT',
  short: 'RMBT',
  peerText: 'an RMBT control server or measurement server',
  groups,
  needs: (s) =>
    s.control_url || (s.server && s.key)
      ? undefined
      : { key: 'control_url', message: 'needs a control_url, or a server and its key (direct mode)' },
  peer(s) {
    if (s.control_url) return urlHostPort(s.control_url);
    if (s.server) {
      const hp = splitHostPort(s.server);
      return { host: hp.host, port: hp.port ?? 443 };
    }
    return undefined;
  },
  measures: (s) => ({
    ping: true,
    jitter: true,
    loss: false,
    latency: s.loaded_latency === false ? [] : ['download', 'upload'],
  }),
  async measure(s, ctx) {
    const { measureRmbt } = await import('./measure.js');
    return measureRmbt(s, {
      ...baseCtx(ctx),
      ...(ctx.automated ? { automated: ctx.automated } : {}),
      onEvent: (e) => {
        if (e.type === 'phase') ctx.onPhase?.(e.phase);
        else if (e.type === 'progress') ctx.onProgress?.(e.phase, e.mbps);
      },
    });
  },
  summary: rmbtSummary,
  server: {
    group: 'rmbt_server',
    kind: 'rmbt-server',
    loss: false,
    enabled: (s) => s.enabled,
    async start(s, o) {
      const { serveRmbt } = await import('./serve.js');
      return serveRmbt(s, o);
    },
  },
  async selfTest(ss, o) {
    const { startRmbtServers } = await import('./serve.js');
    // HTTP Upgrade in TLS, as public deployments send clients, where the native loop carries TLS; plain
    // HTTP Upgrade where it does not, so the native loop still moves the bytes. (port, tls_port and
    // control_port: any non-zero value means "on"; ephemeralPorts picks free ones)
    const servers = await startRmbtServers(
      {
        ...ss,
        bind: '127.0.0.1',
        port: 1,
        tls_port: 1,
        control_port: 1,
        test_duration: 3,
        test_threads: 2,
        encryption: o.engine.tls !== undefined,
      },
      o.general,
      o.engine,
      o.log,
      { ephemeralPorts: true },
    );
    return {
      target: {
        id: 'loopback',
        name: 'Loopback self-test',
        type: 'rmbt',
        control_url: `http://127.0.0.1:${servers.control!.port}/RMBTControlServer`,
        tls_ca: servers.certPath,
        accept_terms: true,
        jitter: 0,
      },
      close: () => servers.close(),
    };
  },
  commands: rmbtCommands,
  addon: {
    groups: {
      rmbt: ['RMBT defaults', 'Settings every RMBT target inherits (each target may override them).'],
      rmbt_server: [
        'RMBT server',
        'Our RMBT measurement and control server, for other probes to test to this one: on with enabled, reached through the ports mapped in the Network panel (8080–8082).',
      ],
    },
    ports: {
      '8080/tcp': 'RMBT control server (hands out test tokens); needs rmbt_server.enabled',
      '8081/tcp': 'RMBT measurement server, HTTP Upgrade and WebSocket',
      '8082/tcp': 'RMBT measurement server inside TLS',
    },
  },
  page: 'rmbt.js',
};
