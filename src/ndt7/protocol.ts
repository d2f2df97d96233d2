import { splitHostPort } from '../net/hostport.js';
import { baseCtx, type ProtocolDescriptor } from '../protocols/contract.js';
import { ndt7Commands } from './commands.js';
import type { Ndt7Server } from './server.js';
import {
  MLAB_PRIVACY_URL,
  type Ndt7ServerSettings,
  type Ndt7Settings,
  ndt7Schema,
  ndt7ServerSchema,
} from './settings.js';
import { ndt7Summary } from './summary.js';

/**
 * ndt7 (M-Lab's Network Diagnostic Tool, v7): one TCP connection per direction over WebSocket, ten
 * seconds each, against M-Lab's servers world-wide (found through Locate v2) or one's own; and our own
 * ndt7 server for LAN devices and M-Lab's browser client (research/public-servers.md §1).
 */
const groups = { ndt7: ndt7Schema, ndt7_server: ndt7ServerSchema } as const;

/** M-Lab's floor for unattended clients: no scheduled run closer than 36 minutes to the one before. */
export const MLAB_MIN_INTERVAL_MIN = 36;

export const ndt7Protocol: ProtocolDescriptor<
  'ndt7',
  Ndt7Settings,
  Ndt7ServerSettings,
  Ndt7Server,
  typeof groups
> = {
  type: 'ndt7',
  label: 'ndt7 (M-Lab)',
  short: 'ndt7',
  peerText: "M-Lab's nearest ndt7 server (with accept_data_policy) or an ndt7 server of your own",
  groups,
  needs: (s) =>
    s.server || s.accept_data_policy
      ? undefined
      : {
          key: 'accept_data_policy',
          message: `uses M-Lab's servers, which publish every result with your public IP address as open data, kept indefinitely (${MLAB_PRIVACY_URL}): set accept_data_policy: true to consent, or server to your own ndt7 server (BP_ERR_NDT7_CONSENT)`,
        },
  scheduleProblem(s, gapMin) {
    if (s.server || gapMin >= MLAB_MIN_INTERVAL_MIN) return undefined;
    return `uses M-Lab's servers, whose rules for unattended clients ask for at least ${MLAB_MIN_INTERVAL_MIN} minutes between runs (this schedule has ${Math.round(gapMin)})`;
  },
  // the ndt7 spec's schedule for unattended clients: exponential gaps with a 6 h mean, 36 min to 15 h
  defaultSchedule: (s) =>
    s.server ? undefined : { meanMin: 360, minMin: MLAB_MIN_INTERVAL_MIN, maxMin: 900 },
  peer(s) {
    if (!s.server) return undefined;
    const hp = splitHostPort(s.server);
    return { host: hp.host, port: hp.port ?? (s.scheme === 'wss' ? 443 : 80) };
  },
  // the ping is the server's MinRTT; latency under load: the server's RTT during the download, TCP
  // connects during the upload
  measures: (s) => ({
    ping: true,
    jitter: false,
    loss: false,
    latency: !s.loaded_latency
      ? []
      : s.direction === 'download'
        ? ['download']
        : s.direction === 'upload'
          ? ['upload']
          : ['download', 'upload'],
    figures: [
      ...(s.direction !== 'upload'
        ? [{ key: 'retransmissions', label: 'retransmissions', unit: '%', precision: 2, icon: 'mdi:repeat' }]
        : []),
      { key: 'server_location', label: 'server location', icon: 'mdi:map-marker', diagnostic: true },
    ],
  }),
  async measure(s, ctx) {
    const { measureNdt7 } = await import('./measure.js');
    return measureNdt7(s, {
      ...baseCtx(ctx),
      ...(ctx.onPhase ? { onPhase: ctx.onPhase } : {}),
      ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
    });
  },
  summary: ndt7Summary,
  server: {
    group: 'ndt7_server',
    kind: 'ndt7-server',
    loss: false,
    enabled: (s) => s.enabled,
    async start(s, o) {
      const { serveNdt7 } = await import('./serve.js');
      return serveNdt7(s, o);
    },
  },
  commands: ndt7Commands,
  addon: {
    groups: {
      ndt7: [
        'ndt7 defaults',
        "Settings every ndt7 target inherits (each target may override them). M-Lab's servers need accept_data_policy.",
      ],
      ndt7_server: [
        'ndt7 server',
        'Our ndt7 server, for a LAN device or a browser running M-Lab’s ndt7 client to test to Home Assistant: on with enabled, reached through the port mapped in the Network panel (8090/tcp).',
      ],
    },
    ports: { '8090/tcp': 'ndt7 server (ws://…/ndt/v7/download); needs ndt7_server.enabled' },
  },
  page: 'ndt7.js',
};
