#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { measureBtest } from './btest/measure.js';
import { startBtestServer } from './btest/serve.js';
import { type CommandFlag, parseArgs } from './cli/args.js';
import { helpText } from './cli/help.js';
import { btestLines, btestProgress, terminalProgress } from './cli/progress.js';
import { summaryText } from './cli/summary.js';
import { loadSettings, type RawSettings } from './config/load.js';
import { type GroupName, type Settings, serviceSchema } from './config/schema.js';
import { loadEngine } from './engine/loader.js';
import { ProbeError, toProbeError } from './errors.js';
import { loadText, MAX_CLIENTS, MAX_RAMP_S, runLoad } from './load/load.js';
import { createLogger, type Logger, resolveLogFormat } from './log.js';
import { startService } from './main.js';
import { cpuWatch } from './measure/quality.js';
import { bracketHost, type RunResult } from './measure/result.js';
import { measureRmbt, splitHostPort } from './rmbt/measure.js';
import { startRmbtServers } from './rmbt/serve.js';
import { appendCsv } from './store/csv.js';
import { DB_FILE, Store } from './store/store.js';
import { type HttpExchange, maskSecrets } from './util/http.js';
import { dropPrivileges } from './util/privileges.js';
import { VERSION } from './version.js';

const COMMON: CommandFlag[] = [
  {
    name: 'options',
    description: 'JSON options file (the add-on reads /data/options.json). Env: BANDWIDTH_PROBE_OPTIONS',
    takesValue: true,
  },
  { name: 'help', description: 'Show this help.', takesValue: false },
];
const MEASURE: CommandFlag[] = [
  ...COMMON,
  { name: 'json', description: 'Print the result as one JSON document on stdout.', takesValue: false },
  {
    name: 'csv',
    description:
      "Append the run as one line to this CSV file (a header line first when the file is new or empty; the page export's columns).",
    takesValue: true,
  },
];

const BTEST_MEASURE: CommandFlag[] = [
  ...MEASURE,
  {
    name: 'interval',
    description:
      'Print one line per second and direction as btest-rs does ("[   1]  TX  285.47 Mbps (35684352 bytes)  cpu: 20%/62%") on stderr.',
    takesValue: false,
  },
];

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

const LOAD: CommandFlag[] = [
  ...COMMON,
  { name: 'json', description: 'Print the report as one JSON document on stdout.', takesValue: false },
  {
    name: 'clients',
    description: `Concurrent clients, 1 to ${MAX_CLIENTS} (default 16).`,
    takesValue: true,
  },
  {
    name: 'ramp',
    description: `Seconds over which the clients start, evenly (0 = all at once; default 0, at most ${MAX_RAMP_S}).`,
    takesValue: true,
  },
  {
    name: 'allow-public',
    description:
      'Load a server at a public address too (refused otherwise: load only servers you own, on your own network).',
    takesValue: false,
  },
];

const QUIET: RawSettings = { general: { log_level: 'warn' } };

interface Command {
  usage: string;
  summary: string;
  groups: GroupName[];
  /** groups whose flags carry the group's name (`--mqtt-password`, `--web-port`) */
  prefixed?: GroupName[];
  flags: CommandFlag[];
  /** a usage error in the settings (a missing --host): exit 2 with the usage line, before anything runs */
  check?(s: Settings): string | undefined;
  /** interactive commands log only warnings unless told otherwise, so the summary stays readable */
  defaults?: RawSettings;
  run(
    s: Settings,
    log: Logger,
    extra: Record<string, string | boolean>,
    signal: AbortSignal,
    /** the settings given as flags on this command line (not from a file or the environment) */
    given: RawSettings,
  ): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  serve: {
    usage: 'bandwidth-probe serve [--options FILE] [flags]',
    summary:
      'The service (the add-on runs this): scheduled runs of every target, the history in SQLite, results as\n' +
      'Home Assistant entities over MQTT. Without targets it measures the built-in loopback servers.',
    // rmbt and btest settings reach targets through the options file or env (their flags would clash);
    // mqtt and web share key names (password, username), so their flags say which: --mqtt-url, --web-port
    groups: ['general', 'service', 'mqtt', 'web'],
    prefixed: ['mqtt', 'web'],
    flags: COMMON,
    async run(s, log, extra, signal) {
      // root only as long as needed: data_dir goes to run_as (the add-on's options file stays the
      // Supervisor's), then uid/gid change before the store, sockets or servers exist (issue 14 row 26)
      const keep = [extra.options, process.env.BANDWIDTH_PROBE_OPTIONS, '/data/options.json'].filter(
        (x): x is string => typeof x === 'string',
      );
      dropPrivileges(s.general.run_as, s.general.data_dir, keep, log);
      const service = await startService(s, log, { version: VERSION });
      log.info(
        { device: service.deviceId, targets: service.targets.map((t) => t.id), version: VERSION },
        'service started',
      );
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      log.info('stopping');
      await service.close();
      // Whatever still holds the loop (a socket in its close handshake) must not delay the exit.
      setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
      return 0;
    },
  },
  demo: {
    usage: 'bandwidth-probe demo [flags]',
    summary:
      'Starts our RMBT control and measurement servers on 127.0.0.1 (free ports, self-signed TLS) and measures\n' +
      'against them through the control server: a real, complete RMBT run without any configuration.',
    groups: ['general', 'rmbt'],
    flags: MEASURE,
    defaults: QUIET,
    async run(s, log, extra, signal) {
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
        return report(result, extra);
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
    groups: ['general', 'rmbt'],
    flags: RMBT_MEASURE,
    defaults: QUIET,
    check: (s) =>
      s.rmbt.control_url || (s.rmbt.server && s.rmbt.key)
        ? undefined
        : s.rmbt.server
          ? 'direct mode needs --key as well as --server (or --key-file: the shared key, e.g. from `server rmbt`)'
          : 'set --control-url, or --server and --key for direct mode',
    run: (s, log, extra, signal, given) =>
      measureAndReport(extra, (onEvent) =>
        measureRmbt(s.rmbt, {
          engine: loadEngine(s.general.engine, log),
          general: s.general,
          log,
          signal,
          onEvent: onEvent(terminalProgress),
          // --duration on this command line wins over the control server's (issue 18)
          ...(s.rmbt.control_url && given.rmbt?.duration !== undefined
            ? { durationOverride: s.rmbt.duration }
            : {}),
          ...(extra['debug-control'] ? { onControl: printExchange } : {}),
        }),
      ),
  },
  'measure btest': {
    usage: 'bandwidth-probe measure btest --host HOST[:PORT] [--user U --password P] [flags]',
    summary: 'Runs one MikroTik bandwidth test (TCP or UDP) against a router or any btest server.',
    groups: ['general', 'btest'],
    flags: BTEST_MEASURE,
    defaults: QUIET,
    check: (s) => (s.btest.host ? undefined : 'set --host (the router or btest server, host[:port])'),
    run: (s, log, extra, signal) =>
      measureAndReport(extra, (onEvent) =>
        measureBtest(s.btest, {
          engine: loadEngine(s.general.engine, log),
          general: s.general,
          log,
          signal,
          onEvent: extra.interval
            ? btestLines(s.btest.direction, s.btest.protocol === 'udp')
            : onEvent(btestProgress),
        }),
      ),
  },
  'load btest': {
    usage: 'bandwidth-probe load btest --host HOST[:PORT] [--clients N] [--ramp S] [btest flags]',
    summary:
      'Many concurrent btest clients against one server you own (ours, a router): connect times, how many\n' +
      'succeeded, and the aggregate throughput. Bounded: at most 256 clients, each for its duration.',
    groups: ['general', 'btest'],
    flags: LOAD,
    defaults: { ...QUIET, btest: { duration: 5 } },
    check: (s) => (s.btest.host ? undefined : 'set --host (the btest server, host[:port])'),
    run: (s, log, extra, signal) => loadAndReport('btest', s, log, extra, signal),
  },
  'load rmbt': {
    usage: 'bandwidth-probe load rmbt (--server HOST:PORT --key[-file] KEY | --control-url URL) [flags]',
    summary:
      'Many concurrent RMBT clients against one server you own (ours, or your own RMBT server): connect and\n' +
      'token times, how many succeeded, and the aggregate throughput. Bounded: at most 256 clients.',
    groups: ['general', 'rmbt'],
    flags: [...LOAD, RMBT_MEASURE.find((f) => f.name === 'key-file')!],
    defaults: { ...QUIET, rmbt: { duration: 3, pretest_duration: 0.5, pings: 3, ping_duration: 0.1 } },
    check: (s) =>
      s.rmbt.control_url || (s.rmbt.server && s.rmbt.key)
        ? undefined
        : 'set --server and --key (or --key-file), or --control-url',
    run: (s, log, extra, signal) => loadAndReport('rmbt', s, log, extra, signal),
  },
  checkpoint: {
    usage: 'bandwidth-probe checkpoint [--data-dir DIR]',
    summary:
      "Writes the history's WAL into the database file (the add-on's backup_pre, so a hot backup is consistent).",
    groups: ['general'],
    flags: COMMON,
    defaults: QUIET,
    async run(s) {
      // A backup hook must not create an empty history where none was (a wrong data_dir).
      const db = join(s.general.data_dir, DB_FILE);
      if (!existsSync(db))
        throw new ProbeError('BP_ERR_STORE', `no history database at ${db} (is --data-dir right?)`);
      const store = Store.open(s.general.data_dir);
      try {
        const r = store.checkpoint();
        process.stdout.write(`checkpoint: ${r.pages} pages${r.busy ? ' (busy: a writer was active)' : ''}\n`);
        return 0;
      } finally {
        store.close();
      }
    },
  },
  'server btest': {
    usage: 'bandwidth-probe server btest [--password P] [flags]',
    summary:
      'Runs our btest server (MikroTik /tool bandwidth-test clients and btest clients) until interrupted.',
    groups: ['general', 'btest_server'],
    flags: COMMON,
    async run(s, log, _extra, signal) {
      const engine = loadEngine(s.general.engine, log);
      const b = s.btest_server;
      const server = await startBtestServer(b, engine, log);
      process.stderr.write(
        `btest server on ${bracketHost(b.bind)}:${server.port}, auth ${b.auth}${b.auth === 'none' ? '' : ` (user ${b.user})`}\n`,
      );
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      await server.close();
      return 0;
    },
  },
  'server rmbt': {
    usage: 'bandwidth-probe server rmbt [flags]',
    summary: 'Runs our RMBT measurement server and control server until interrupted.',
    groups: ['general', 'rmbt_server'],
    flags: COMMON,
    async run(s, log, _extra, signal) {
      const engine = loadEngine(s.general.engine, log);
      const servers = await startRmbtServers(s.rmbt_server, s.general, engine, log);
      const lines = servers.measurement.listeners.map(
        (l) =>
          `  ${l.tls ? 'TLS ' : ''}${l.mode === 'http' ? 'HTTP Upgrade/WebSocket' : 'plain RMBT'} on ${bracketHost(s.rmbt_server.bind)}:${l.port}`,
      );
      if (servers.control)
        lines.push(
          `  control server on http://${bracketHost(s.rmbt_server.bind)}:${servers.control.port}/RMBTControlServer`,
        );
      if (servers.keyPath)
        lines.push(`  shared key in ${servers.keyPath} (give it to direct-mode clients with --key)`);
      if (servers.certPath) lines.push(`  TLS certificate ${servers.certPath}`);
      process.stderr.write(`RMBT server running:\n${lines.join('\n')}\n`);
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      await servers.close();
      return 0;
    },
  },
};

/** Runs one measurement with live progress on a terminal (none with --json) and reports it. */
/** `load btest|rmbt`: runs the clients and prints the report (exit 1 when any client failed). */
async function loadAndReport(
  protocol: 'btest' | 'rmbt',
  s: Settings,
  log: Logger,
  extra: Record<string, string | boolean>,
  signal: AbortSignal,
): Promise<number> {
  const num = (name: string, dflt: number) => {
    const v = extra[name];
    if (v === undefined) return dflt;
    const n = Number(v);
    if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n))
      throw new ProbeError('BP_ERR_USAGE', `--${name} takes a number, not "${String(v)}"`);
    return n;
  };
  const clients = num('clients', 16);
  const report = await runLoad({
    protocol,
    clients,
    rampS: num('ramp', 0),
    btest: s.btest,
    rmbt: s.rmbt,
    general: s.general,
    engine: loadEngine(s.general.engine, log),
    log,
    signal,
    allowPublic: extra['allow-public'] === true,
    ...(extra.json
      ? {}
      : {
          onClient: (_c: unknown, done: number) => {
            if (process.stderr.isTTY) process.stderr.write(`\r${done}/${clients} clients done`);
          },
        }),
  });
  if (!extra.json && process.stderr.isTTY) process.stderr.write('\n');
  process.stdout.write(extra.json ? `${JSON.stringify(report, null, 2)}\n` : `${loadText(report)}\n`);
  return report.failed === 0 ? 0 : 1;
}

/** `--debug-control`: one JSON line per control-server request or answer, secrets masked. */
function printExchange(e: HttpExchange): void {
  const shown =
    e.kind === 'request'
      ? { ...e, headers: maskSecrets(e.headers), body: maskSecrets(e.body) }
      : e.kind === 'answer'
        ? { ...e, body: maskSecrets(e.body) }
        : e;
  process.stderr.write(`${JSON.stringify({ control: shown })}\n`);
}

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

async function measureAndReport(
  extra: Record<string, string | boolean>,
  measure: (progress: <E>(make: () => (e: E) => void) => ((e: E) => void) | undefined) => Promise<RunResult>,
): Promise<number> {
  const cpu = cpuWatch();
  const result = await measure((make) => (extra.json ? undefined : make()));
  // the flag the service would set: the probe itself was the ceiling (service.cpu_limit's default)
  cpu.apply(result, serviceSchema.cpu_limit.default);
  return report(result, extra);
}

function report(result: RunResult, extra: Record<string, string | boolean>): number {
  if (extra.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(`${summaryText(result)}\n`);
  if (result.status !== 'ok' && result.error)
    process.stderr.write(`${result.error.code}: ${result.error.message}\n`);
  if (typeof extra.csv === 'string') {
    try {
      appendCsv(extra.csv, result);
    } catch (err) {
      const e = toProbeError(err, 'BP_ERR_STORE');
      process.stderr.write(`${e.code}: ${e.message}\n`);
      return 1;
    }
  }
  return result.status === 'ok' ? 0 : 1;
}

function pickCommand(argv: string[]): { name: string; rest: string[] } {
  const [a, b] = argv;
  if (a && b && `${a} ${b}` in COMMANDS) return { name: `${a} ${b}`, rest: argv.slice(2) };
  if (a === 'demo' || a === 'serve' || a === 'checkpoint') return { name: a, rest: argv.slice(1) };
  throw new ProbeError(
    'BP_ERR_USAGE',
    a?.startsWith('--')
      ? `a command comes first (e.g. bandwidth-probe demo ${a}); commands: ${Object.keys(COMMANDS).join(', ')}`
      : `unknown command "${argv.slice(0, 2).join(' ')}"; commands: ${Object.keys(COMMANDS).join(', ')}`,
  );
}

/** Word-wraps a paragraph at `width` columns behind `indent` (help text never cuts a sentence). */
function wrap(text: string, indent: string, width = 100): string {
  const out: string[] = [];
  let line = '';
  for (const w of text.replace(/\s+/g, ' ').trim().split(' ')) {
    if (line && indent.length + line.length + 1 + w.length > width) {
      out.push(indent + line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(indent + line);
  return out.join('\n');
}

/** The command list: every command, or those under one word (`measure`, `server`). */
function overview(under?: string): string {
  const cmds = Object.entries(COMMANDS).filter(([n]) => !under || n.startsWith(`${under} `));
  const head = under ? `bandwidth-probe ${under} <command>` : `bandwidth-probe ${VERSION}`;
  return `${head}\n\nCommands:\n${cmds
    .map(([, c]) => `  ${c.usage}\n${wrap(c.summary, '      ')}`)
    .join('\n')}\n\nRun a command with --help for its flags.\n`;
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === '--version' || argv[0] === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  // A bare `bandwidth-probe` (or `help`, `--help`) says what it can do instead of starting something.
  if (argv.length === 0 || argv[0] === 'help' || (argv[0] === '--help' && argv.length === 1)) {
    process.stdout.write(overview());
    return 0;
  }
  // `measure` / `server` without (or before) a sub-command: its sub-commands
  if (
    (argv[0] === 'measure' || argv[0] === 'server' || argv[0] === 'load') &&
    !(`${argv[0]} ${argv[1]}` in COMMANDS)
  ) {
    const asked = argv.length === 1 || argv[1] === '--help';
    (asked ? process.stdout : process.stderr).write(
      asked
        ? overview(argv[0])
        : `BP_ERR_USAGE: unknown command "${argv.slice(0, 2).join(' ')}"\n\n${overview(argv[0])}`,
    );
    return asked ? 0 : 2;
  }
  let cmd: Command | undefined;
  let parsed: ReturnType<typeof parseArgs>;
  let settings: Settings;
  try {
    const picked = pickCommand(argv);
    cmd = COMMANDS[picked.name]!;
    parsed = parseArgs(picked.rest, cmd.groups, cmd.flags, cmd.prefixed);
    if (parsed.extra.help) {
      process.stdout.write(`${helpText(cmd.usage, cmd.summary, cmd.groups, cmd.flags, cmd.prefixed)}\n`);
      return 0;
    }
    if (parsed.positionals.length)
      throw new ProbeError('BP_ERR_USAGE', `unexpected argument ${parsed.positionals[0]}`);
    const explicit = (parsed.extra.options as string | undefined) ?? process.env.BANDWIDTH_PROBE_OPTIONS;
    // As a Home Assistant add-on the Supervisor writes the options here.
    const addonFile =
      process.env.SUPERVISOR_TOKEN && existsSync('/data/options.json') ? '/data/options.json' : undefined;
    const optionsFile = explicit ?? addonFile;
    if (typeof parsed.extra['key-file'] === 'string')
      parsed.settings.rmbt = { ...parsed.settings.rmbt, key: keyFromFile(parsed.extra['key-file']) };
    settings = loadSettings({
      ...(optionsFile ? { optionsFile, optionsFileRequired: Boolean(explicit) } : {}),
      env: process.env,
      flags: parsed.settings,
      ...(cmd.defaults ? { defaults: cmd.defaults } : {}),
    });
    const wrong = cmd.check?.(settings);
    if (wrong) throw new ProbeError('BP_ERR_USAGE', wrong);
  } catch (err) {
    const e = toProbeError(err, 'BP_ERR_USAGE');
    process.stderr.write(`${e.code}: ${e.message}\n`);
    // a usage error shows the usage line (and never a summary of a run that did not happen)
    const usage = cmd?.usage;
    if (e.code === 'BP_ERR_USAGE')
      process.stderr.write(
        usage ? `Usage: ${usage}\nRun it with --help for every flag.\n` : `\n${overview()}`,
      );
    return 2;
  }
  const sys = settings.general.syslog ? splitHostPort(settings.general.syslog) : undefined;
  const log = createLogger(
    settings.general.log_level,
    process.stderr,
    sys && { host: sys.host, port: sys.port ?? 514, format: settings.general.syslog_format },
    resolveLogFormat(settings.general.log_format),
  );
  const ctrl = new AbortController();
  const stop = () => ctrl.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await cmd.run(settings, log, parsed.extra, ctrl.signal, parsed.settings);
  } catch (err) {
    const e = toProbeError(err, 'BP_ERR_CONFIG');
    process.stderr.write(`${e.code}: ${e.message}\n`);
    return e.code === 'BP_ERR_CONFIG' || e.code === 'BP_ERR_USAGE' || e.code === 'BP_ERR_LOCKED' ? 2 : 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`${String(err)}\n`);
    process.exitCode = 1;
  },
);
