import type { Command, CommandFlag } from '../cli/command.js';
import { COMMON, LOAD, MEASURE, QUIET } from '../cli/flags.js';
import type { GeneralSettings } from '../config/schema.js';
import { bracketHost } from '../measure/result.js';
import type { BtestServerSettings, BtestSettings } from './settings.js';
import { btestSummary } from './summary.js';

/** The settings the btest commands read. */
interface BtestCommandSettings {
  readonly general: GeneralSettings;
  readonly btest: BtestSettings;
  readonly btest_server: BtestServerSettings;
}

const BTEST_MEASURE: CommandFlag[] = [
  ...MEASURE,
  {
    name: 'interval',
    description:
      'Print one line per second and direction as btest-rs does ("[   1]  TX  285.47 Mbps (35684352 bytes)  cpu: 20%/62%") on stderr.',
    takesValue: false,
  },
];

export const btestCommands: Record<string, Command<BtestCommandSettings>> = {
  'measure btest': {
    usage: 'bandwidth-probe measure btest --host HOST[:PORT] [--user U --password P] [flags]',
    summary: 'Runs one MikroTik bandwidth test (TCP or UDP) against a router or any btest server.',
    order: 31,
    groups: ['general', 'btest'],
    flags: BTEST_MEASURE,
    defaults: QUIET,
    check: (s) => (s.btest.host ? undefined : 'set --host (the router or btest server, host[:port])'),
    async run(s, log, extra, signal) {
      const [{ loadEngine }, { measureBtest }, { btestLines, btestProgress }, { measureAndReport }] =
        await Promise.all([
          import('../engine/loader.js'),
          import('./measure.js'),
          import('./progress.js'),
          import('../cli/report.js'),
        ]);
      return measureAndReport(
        extra,
        (onEvent) =>
          measureBtest(s.btest, {
            engine: loadEngine(s.general.engine, log),
            general: s.general,
            log,
            signal,
            onEvent: extra.interval
              ? btestLines(s.btest.direction, s.btest.protocol === 'udp')
              : onEvent(btestProgress),
          }),
        btestSummary,
      );
    },
  },
  'load btest': {
    usage: 'bandwidth-probe load btest --host HOST[:PORT] [--clients N] [--ramp S] [btest flags]',
    summary:
      'Many concurrent btest clients against one server you own (ours, a router): connect times, how many\n' +
      'succeeded, and the aggregate throughput. Bounded: at most 256 clients, each for its duration.',
    order: 40,
    groups: ['general', 'btest'],
    flags: LOAD,
    defaults: { ...QUIET, btest: { duration: 5 } },
    check: (s) => (s.btest.host ? undefined : 'set --host (the btest server, host[:port])'),
    async run(s, log, extra, signal) {
      const [{ btestLoadPeer }, { loadAndReport }] = await Promise.all([
        import('./load.js'),
        import('../cli/report.js'),
      ]);
      return loadAndReport('btest', btestLoadPeer(s.btest), s.general, log, extra, signal);
    },
  },
  'server btest': {
    usage: 'bandwidth-probe server btest [--password P] [flags]',
    summary:
      'Runs our btest server (MikroTik /tool bandwidth-test clients and btest clients) until interrupted.',
    order: 60,
    groups: ['general', 'btest_server'],
    flags: COMMON,
    async run(s, log, _extra, signal) {
      const [{ loadEngine }, { startBtestServer }, { untilStopped }] = await Promise.all([
        import('../engine/loader.js'),
        import('./serve.js'),
        import('../cli/report.js'),
      ]);
      const engine = loadEngine(s.general.engine, log);
      const b = s.btest_server;
      const server = await startBtestServer(b, engine, log);
      process.stderr.write(
        `btest server on ${bracketHost(b.bind)}:${server.port}, auth ${b.auth}${b.auth === 'none' ? '' : ` (user ${b.user})`}\n`,
      );
      return untilStopped(signal, () => server.close());
    },
  },
};
