import { readFileSync } from 'node:fs';
import type { Command, CommandFlag } from '../cli/command.js';
import { COMMON, LOAD, MEASURE, QUIET } from '../cli/flags.js';
import type { GeneralSettings } from '../config/schema.js';
import { ProbeError } from '../errors.js';
import { bracketHost } from '../measure/result.js';
import type { HttpExchange } from '../net/http.js';
import type { RmbtServerSettings, RmbtSettings } from './settings.js';
import { rmbtSummary } from './summary.js';

/** The settings the RMBT commands read. */
interface RmbtCommandSettings {
  readonly general: GeneralSettings;
  readonly rmbt: RmbtSettings;
  readonly rmbt_server: RmbtServerSettings;
}

const RMBT_MEASURE: CommandFlag[] = [
  ...MEASURE,
  {
    name: 'key-file',
    description:
      "Read the shared key for direct mode from this file: its first word, as in the rmbt-secret.key our server writes ('<key> <label>' per line).",
    takesValue: true,
  },
  {
    name: 'debug-control',
    description:
      "Print each control-server request and answer as one JSON line on stderr (tokens, keys and passwords masked as '***(length)').",
    takesValue: false,
  },
];

/** `--key-file`: the first word of the file (our server's rmbt-secret.key holds `<key> <label>`). */
function keyFromFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ProbeError('BP_ERR_CONFIG', `--key-file ${path}: ${(err as Error).message}`);
  }
  const key = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l && !l.startsWith('#'))
    ?.split(/\s+/)[0];
  if (!key) throw new ProbeError('BP_ERR_CONFIG', `--key-file ${path} holds no key`);
  return key;
}

const withKeyFile: Command['prepare'] = (extra, flags) => {
  if (typeof extra['key-file'] === 'string')
    flags.rmbt = { ...flags.rmbt, key: keyFromFile(extra['key-file']) };
};

/** `--debug-control`: one JSON line per control-server request or answer, secrets masked. */
async function exchangePrinter(): Promise<(e: HttpExchange) => void> {
  const { maskSecrets } = await import('../net/http.js');
  return (e) => {
    const shown =
      e.kind === 'request'
        ? { ...e, headers: maskSecrets(e.headers), body: maskSecrets(e.body) }
        : e.kind === 'answer'
          ? { ...e, body: maskSecrets(e.body) }
          : e;
    process.stderr.write(`${JSON.stringify({ control: shown })}\n`);
  };
}

const directOrControl = (s: RmbtCommandSettings) =>
  Boolean(s.rmbt.control_url || (s.rmbt.server && s.rmbt.key));

export const rmbtCommands: Record<string, Command<RmbtCommandSettings>> = {
  demo: {
    usage: 'bandwidth-probe demo [flags]',
    summary:
      'Starts our RMBT control and measurement servers on 127.0.0.1 (free ports, self-signed TLS) and measures\n' +
      'against them through the control server: a real, complete RMBT run without any configuration.',
    order: 20,
    groups: ['general', 'rmbt'],
    flags: MEASURE,
    defaults: QUIET,
    async run(s, log, extra, signal) {
      const [{ loadEngine }, { startRmbtServers }, { measureRmbt }, { terminalProgress }, { report }] =
        await Promise.all([
          import('../engine/loader.js'),
          import('./serve.js'),
          import('./measure.js'),
          import('./progress.js'),
          import('../cli/report.js'),
        ]);
      const { cpuWatch } = await import('../measure/quality.js');
      const { serviceSchema } = await import('../config/schema.js');
      const engine = loadEngine(s.general.engine, log);
      const servers = await startRmbtServers(
        {
          ...s.rmbt_server,
          bind: '127.0.0.1',
          test_duration: s.rmbt.duration,
          test_threads: s.rmbt.threads || 3,
          test_pings: s.rmbt.pings,
        },
        s.general,
        engine,
        log,
        { ephemeralPorts: true },
      );
      try {
        const control_url = `http://127.0.0.1:${servers.control!.port}/RMBTControlServer`;
        if (!extra.json)
          process.stderr.write(`Demo: our RMBT servers run on 127.0.0.1; control server ${control_url}\n`);
        const cpu = cpuWatch();
        const result = await measureRmbt(
          { ...s.rmbt, control_url, tls_ca: servers.certPath!, accept_terms: true },
          {
            engine,
            general: s.general,
            log,
            signal,
            onEvent: extra.json ? undefined : terminalProgress(),
            targetId: 'demo',
          },
        );
        cpu.apply(result, serviceSchema.cpu_limit.default);
        return report(result, extra, rmbtSummary);
      } finally {
        await servers.close();
      }
    },
  },
  'measure rmbt': {
    usage: 'bandwidth-probe measure rmbt (--control-url URL | --server HOST:PORT --key[-file] KEY) [flags]',
    summary:
      'Runs one RMBT measurement (ping, download, upload) and prints the result. With a control server,\n' +
      '--duration overrides the duration it hands out (a measurement server may refuse more than it allows; the run then says so).',
    order: 30,
    groups: ['general', 'rmbt'],
    flags: RMBT_MEASURE,
    defaults: QUIET,
    prepare: withKeyFile,
    check: (s) =>
      directOrControl(s)
        ? undefined
        : s.rmbt.server
          ? 'direct mode needs --key as well as --server (or --key-file: the shared key, e.g. from `server rmbt`)'
          : 'set --control-url, or --server and --key for direct mode',
    async run(s, log, extra, signal, given) {
      const [{ loadEngine }, { measureRmbt }, { terminalProgress }, { measureAndReport }] = await Promise.all(
        [
          import('../engine/loader.js'),
          import('./measure.js'),
          import('./progress.js'),
          import('../cli/report.js'),
        ],
      );
      const onControl = extra['debug-control'] ? await exchangePrinter() : undefined;
      return measureAndReport(
        extra,
        (onEvent) =>
          measureRmbt(s.rmbt, {
            engine: loadEngine(s.general.engine, log),
            general: s.general,
            log,
            signal,
            onEvent: onEvent(terminalProgress),
            // --duration on this command line wins over the control server's
            ...(s.rmbt.control_url && given.rmbt?.duration !== undefined
              ? { durationOverride: s.rmbt.duration }
              : {}),
            ...(onControl ? { onControl } : {}),
          }),
        rmbtSummary,
      );
    },
  },
  'load rmbt': {
    usage: 'bandwidth-probe load rmbt (--server HOST:PORT --key[-file] KEY | --control-url URL) [flags]',
    summary:
      'Many concurrent RMBT clients against one server you own (ours, or your own RMBT server): connect and\n' +
      'token times, how many succeeded, and the aggregate throughput. Bounded: at most 256 clients.',
    order: 41,
    groups: ['general', 'rmbt'],
    flags: [...LOAD, RMBT_MEASURE.find((f) => f.name === 'key-file')!],
    defaults: { ...QUIET, rmbt: { duration: 3, pretest_duration: 0.5, pings: 3, ping_duration: 0.1 } },
    prepare: withKeyFile,
    check: (s) =>
      directOrControl(s) ? undefined : 'set --server and --key (or --key-file), or --control-url',
    async run(s, log, extra, signal) {
      const [{ rmbtLoadPeer }, { loadAndReport }] = await Promise.all([
        import('./load.js'),
        import('../cli/report.js'),
      ]);
      return loadAndReport('rmbt', rmbtLoadPeer(s.rmbt), s.general, log, extra, signal);
    },
  },
  'server rmbt': {
    usage: 'bandwidth-probe server rmbt [flags]',
    summary: 'Runs our RMBT measurement server and control server until interrupted.',
    order: 61,
    groups: ['general', 'rmbt_server'],
    flags: COMMON,
    async run(s, log, _extra, signal) {
      const [{ loadEngine }, { startRmbtServers }, { untilStopped }] = await Promise.all([
        import('../engine/loader.js'),
        import('./serve.js'),
        import('../cli/report.js'),
      ]);
      const engine = loadEngine(s.general.engine, log);
      const servers = await startRmbtServers(s.rmbt_server, s.general, engine, log);
      const bind = bracketHost(s.rmbt_server.bind);
      const lines = servers.measurement.listeners.map(
        (l) =>
          `  ${l.tls ? 'TLS ' : ''}${l.mode === 'http' ? 'HTTP Upgrade/WebSocket' : 'plain RMBT'} on ${bind}:${l.port}`,
      );
      if (servers.control)
        lines.push(`  control server on http://${bind}:${servers.control.port}/RMBTControlServer`);
      if (servers.keyPath)
        lines.push(`  shared key in ${servers.keyPath} (give it to direct-mode clients with --key)`);
      if (servers.certPath) lines.push(`  TLS certificate ${servers.certPath}`);
      process.stderr.write(`RMBT server running:\n${lines.join('\n')}\n`);
      return untilStopped(signal, () => servers.close());
    },
  },
};
