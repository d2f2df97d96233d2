import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { type Logger, pino } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Where `syslog` sends a copy of the log: a host, a UDP port, and the message format. */
export interface SyslogTarget {
  host: string;
  port: number;
  format: 'rfc3164' | 'rfc5424';
}

export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * Which form the log takes. `auto`: readable lines on a terminal and in the HA add-on (whose Log tab is
 * read by a person, as text, and parsed by nobody), JSON elsewhere (docker logs, pipes and collectors,
 * which parse it). Colours only on a terminal.
 */
export function resolveLogFormat(
  format: LogFormat,
  stream: { isTTY?: boolean } = process.stderr,
  env: NodeJS.ProcessEnv = process.env,
): { pretty: boolean; colour: boolean } {
  const tty = Boolean(stream.isTTY);
  const pretty = format === 'pretty' || (format === 'auto' && (tty || Boolean(env.SUPERVISOR_TOKEN)));
  return { pretty, colour: pretty && tty && !env.NO_COLOR };
}

/** pino-pretty's options for one line per entry: time, level, message, then the fields as key=value. */
export function prettyOptions(colour: boolean): Record<string, unknown> {
  return {
    colorize: colour,
    singleLine: true,
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
    // module and target lead the message, so they are not repeated among the fields
    ignore: 'pid,hostname,name,module,target',
    messageFormat: '{if module}[{module}] {end}{if target}{target}: {end}{msg}',
  };
}

/**
 * Logs to stderr, as JSON lines or readable lines (`log_format`) (stdout stays free for `--json` output). Secrets are redacted by key name so a
 * settings dump or a request body can never leak them. With `syslog`, every line also goes to a syslog
 * collector over UDP (RFC 3164 or 5424), through pino's own transports (pino-syslog formats, pino-socket
 * sends) on a worker thread, so a slow or absent collector never blocks a measurement.
 */
export function createLogger(
  level: LogLevel,
  destination: NodeJS.WritableStream = process.stderr,
  syslog?: SyslogTarget,
  format: { pretty: boolean; colour: boolean } = { pretty: false, colour: false },
): Logger {
  const local: { target: string; level: string; options: Record<string, unknown> } = format.pretty
    ? { target: 'pino-pretty', level, options: { ...prettyOptions(format.colour), destination: 2 } }
    : { target: 'pino/file', level, options: { destination: 2 } };
  const stream = syslog
    ? pino.transport({
        targets: [
          local,
          {
            level,
            pipeline: [
              {
                target: 'pino-syslog',
                options: {
                  modern: syslog.format === 'rfc5424',
                  appname: 'bandwidth-probe',
                  enablePipelining: true,
                },
              },
              { target: 'pino-socket', options: { address: syslog.host, port: syslog.port, mode: 'udp' } },
            ],
          },
        ],
      })
    : format.pretty
      ? // synchronous, in this thread: the probe logs a few lines a minute, and an exit loses none
        // (loaded only when wanted: JSON logs never pay for it at start)
        (createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty')).build({
          ...prettyOptions(format.colour),
          destination,
          sync: true,
        })
      : destination;
  return pino(
    {
      level,
      // The syslog header carries the host and the process (pino-syslog reads them from each line).
      base: syslog
        ? { name: 'bandwidth-probe', pid: process.pid, hostname: hostname() }
        : { name: 'bandwidth-probe' },
      redact: {
        paths: [
          'key',
          'password',
          'secret',
          '*.key',
          '*.password',
          '*.secret',
          'token',
          '*.token',
          'test_token',
        ],
        censor: '[redacted]',
      },
    },
    stream,
  );
}
