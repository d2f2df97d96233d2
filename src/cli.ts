#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from './cli/args.js';
import type { Command, RawGroups } from './cli/command.js';
import { COMMON, QUIET } from './cli/flags.js';
import { helpText } from './cli/help.js';
import { loadSettings, type RawSettings } from './config/load.js';
import type { GroupName, Settings } from './config/settings.js';
import { ProbeError, toProbeError } from './errors.js';
import { createLogger, resolveLogFormat } from './log.js';
import { startService } from './main.js';
import { splitHostPort } from './net/hostport.js';
import { PROTOCOLS } from './protocols/registry.js';
import { DB_FILE, Store } from './store/store.js';
import { dropPrivileges } from './util/privileges.js';
import { VERSION } from './version.js';

/** The commands that belong to no protocol; each protocol's come from its descriptor. */
const GENERAL: Record<string, Command<Settings>> = {
  serve: {
    order: 10,
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
      // Supervisor's), then uid/gid change before the store, sockets or servers exist
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
  checkpoint: {
    order: 50,
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
};

/** Every command, in the order --help lists them. */
const COMMANDS: Record<string, Command<Settings>> = Object.fromEntries(
  [...Object.entries(GENERAL), ...PROTOCOLS.flatMap((p) => Object.entries(p.commands ?? {}))].sort(
    ([, a], [, b]) => a.order - b.order,
  ),
) as Record<string, Command<Settings>>;
/** The first words of two-word commands (`measure`, `load`, `server`): alone, they list their commands. */
const VERBS = new Set(Object.keys(COMMANDS).flatMap((n) => (n.includes(' ') ? [n.split(' ')[0]!] : [])));

function pickCommand(argv: string[]): { name: string; rest: string[] } {
  const [a, b] = argv;
  if (a && b && `${a} ${b}` in COMMANDS) return { name: `${a} ${b}`, rest: argv.slice(2) };
  if (a && a in COMMANDS) return { name: a, rest: argv.slice(1) };
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
  if (argv[0] !== undefined && VERBS.has(argv[0]) && !(`${argv[0]} ${argv[1]}` in COMMANDS)) {
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
    const groups = cmd.groups as GroupName[];
    const prefixed = cmd.prefixed as GroupName[] | undefined;
    parsed = parseArgs(picked.rest, groups, cmd.flags, prefixed);
    if (parsed.extra.help) {
      process.stdout.write(`${helpText(cmd.usage, cmd.summary, groups, cmd.flags, prefixed)}\n`);
      return 0;
    }
    if (parsed.positionals.length)
      throw new ProbeError('BP_ERR_USAGE', `unexpected argument ${parsed.positionals[0]}`);
    const explicit = (parsed.extra.options as string | undefined) ?? process.env.BANDWIDTH_PROBE_OPTIONS;
    // As a Home Assistant add-on the Supervisor writes the options here.
    const addonFile =
      process.env.SUPERVISOR_TOKEN && existsSync('/data/options.json') ? '/data/options.json' : undefined;
    const optionsFile = explicit ?? addonFile;
    cmd.prepare?.(parsed.extra, parsed.settings as RawGroups);
    settings = loadSettings({
      ...(optionsFile ? { optionsFile, optionsFileRequired: Boolean(explicit) } : {}),
      env: process.env,
      flags: parsed.settings,
      ...(cmd.defaults ? { defaults: cmd.defaults as RawSettings } : {}),
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
    return await cmd.run(settings, log, parsed.extra, ctrl.signal, parsed.settings as RawGroups);
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
