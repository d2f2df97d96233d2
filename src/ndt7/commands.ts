import type { Command } from '../cli/command.js';
import { COMMON, MEASURE, QUIET } from '../cli/flags.js';
import type { GeneralSettings } from '../config/schema.js';
import { bracketHost } from '../measure/result.js';
import type { Ndt7ServerSettings, Ndt7Settings } from './settings.js';
import { ndt7Summary } from './summary.js';

/** The settings the ndt7 commands read. */
interface Ndt7CommandSettings {
  readonly general: GeneralSettings;
  readonly ndt7: Ndt7Settings;
  readonly ndt7_server: Ndt7ServerSettings;
}

export const ndt7Commands: Record<string, Command<Ndt7CommandSettings>> = {
  'measure ndt7': {
    usage:
      'bandwidth-probe measure ndt7 [--accept-data-policy | --server HOST:PORT] [--scheme ws|wss] [flags]',
    summary:
      "Runs one ndt7 test (M-Lab's open protocol: download, then upload, ten seconds each on one TCP\n" +
      "connection) against M-Lab's nearest server (consent to its data policy first) or your own.",
    order: 32,
    groups: ['general', 'ndt7'],
    flags: MEASURE,
    defaults: QUIET,
    // no usage check for consent: the run itself fails with BP_ERR_NDT7_CONSENT and says why
    async run(s, log, extra, signal) {
      const [{ loadEngine }, { measureNdt7 }, { ndt7Progress }, { measureAndReport }] = await Promise.all([
        import('../engine/loader.js'),
        import('./measure.js'),
        import('./progress.js'),
        import('../cli/report.js'),
      ]);
      return measureAndReport(
        extra,
        (progress) => {
          const show = progress(ndt7Progress);
          return measureNdt7(s.ndt7, {
            engine: loadEngine(s.general.engine, log),
            general: s.general,
            log,
            signal,
            ...(show
              ? {
                  onPhase: (phase: string) => show({ type: 'phase', phase }),
                  onProgress: (direction: 'download' | 'upload', mbps: number) =>
                    show({ type: 'progress', direction, mbps }),
                }
              : {}),
          });
        },
        ndt7Summary,
      );
    },
  },
  'server ndt7': {
    usage: 'bandwidth-probe server ndt7 [--bind ADDR] [--port P] [--tls-port P] [flags]',
    summary: "Runs our ndt7 server (M-Lab's ndt7 clients, ours and the browser's) until interrupted.",
    order: 62,
    groups: ['general', 'ndt7_server'],
    flags: COMMON,
    async run(s, log, _extra, signal) {
      const [{ loadEngine }, { startNdt7Server }, { untilStopped }] = await Promise.all([
        import('../engine/loader.js'),
        import('./serve.js'),
        import('../cli/report.js'),
      ]);
      const engine = loadEngine(s.general.engine, log);
      const n = s.ndt7_server;
      const server = await startNdt7Server(n, s.general, engine, log);
      const host = bracketHost(n.bind);
      process.stderr.write(
        `ndt7 server on ws://${host}:${server.port}/ndt/v7/download${server.tlsPort ? ` and wss://${host}:${server.tlsPort}` : ''}\n`,
      );
      return untilStopped(signal, () => server.close());
    },
  },
};
