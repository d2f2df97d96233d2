import { splitHostPort } from '../net/hostport.js';
import type { ProtocolDescriptor } from '../protocols/contract.js';
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
      engine: ctx.engine,
      general: ctx.general,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      ...(ctx.targetId ? { targetId: ctx.targetId } : {}),
      ...(ctx.log ? { log: ctx.log } : {}),
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
  page: 'btest.js',
};
