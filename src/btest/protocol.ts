import { splitHostPort } from '../net/hostport.js';
import { baseCtx, type ProtocolDescriptor } from '../protocols/contract.js';
import { btestCommands } from './commands.js';
import type { BtestServer } from './server.js';
import { type BtestServerSettings, type BtestSettings, btestSchema, btestServerSchema } from './settings.js';
import { btestSummary } from './summary.js';

/**
 * MikroTik btest (/tool bandwidth-test): TCP or UDP to a router or a btest server, MD5 or EC-SRP5
 * logins, and our own server that routers test against (specs/btest.md).
 */
const groups = { btest: btestSchema, btest_server: btestServerSchema } as const;

export const btestProtocol: ProtocolDescriptor<
  'btest',
  BtestSettings,
  BtestServerSettings,
  BtestServer,
  typeof groups
> = {
  type: 'btest',
  label: 'MikroTik btest',
  short: 'btest',
  peerText: 'a MikroTik router or btest server',
  groups,
  needs: (s) => (s.host ? undefined : { key: 'host', message: 'needs a host' }),
  peer(s) {
    if (!s.host) return undefined;
    const hp = splitHostPort(s.host);
    return { host: hp.host, port: hp.port ?? 2000 };
  },
  // btest has no ping; jitter is UDP's packet jitter (TCP has none); it measures latency under load in
  // the direction it loads (`both` has no download or upload latency of its own)
  measures: (s) => ({
    ping: false,
    jitter: s.protocol === 'udp',
    loss: s.protocol === 'udp',
    latency: !s.loaded_latency
      ? []
      : s.direction === 'receive'
        ? ['download']
        : s.direction === 'send'
          ? ['upload']
          : ['both'],
  }),
  async measure(s, ctx) {
    const { measureBtest } = await import('./measure.js');
    return measureBtest(s, {
      ...baseCtx(ctx),
      onEvent: (e) => {
        if (e.type === 'phase') ctx.onPhase?.(e.phase);
        else {
          if (e.rx_mbps) ctx.onProgress?.('download', e.rx_mbps);
          if (e.tx_mbps) ctx.onProgress?.('upload', e.tx_mbps);
        }
      },
    });
  },
  summary: btestSummary,
  server: {
    group: 'btest_server',
    kind: 'btest-server',
    loss: true,
    enabled: (s) => s.enabled,
    async start(s, o) {
      const { serveBtest } = await import('./serve.js');
      return serveBtest(s, o);
    },
  },
  commands: btestCommands,
  addon: {
    groups: {
      btest: ['btest defaults', 'Settings every btest target inherits (each target may override them).'],
      btest_server: [
        'btest server',
        'Our btest server, for a MikroTik router (/tool bandwidth-test) to test to Home Assistant: on with enabled, reached through the ports mapped in the Network panel (2000/tcp, 2001–2004/udp).',
      ],
    },
    // the UDP ports are the default udp_port_start 2001 and max_sessions 4: the server announces its
    // own port to the client, so a UDP host port must equal its container port
    ports: {
      '2000/tcp': 'btest server (MikroTik /tool bandwidth-test); needs btest_server.enabled',
      '2001/udp': 'btest server UDP tests, 1 of 4 (host port must stay 2001)',
      '2002/udp': 'btest server UDP tests, 2 of 4 (host port must stay 2002)',
      '2003/udp': 'btest server UDP tests, 3 of 4 (host port must stay 2003)',
      '2004/udp': 'btest server UDP tests, 4 of 4 (host port must stay 2004)',
    },
  },
  page: 'btest.js',
};
