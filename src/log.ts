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

/**
 * JSON logs to stderr (stdout stays free for `--json` output). Secrets are redacted by key name so a
 * settings dump or a request body can never leak them. With `syslog`, every line also goes to a syslog
 * collector over UDP (RFC 3164 or 5424), through pino's own transports (pino-syslog formats, pino-socket
 * sends) on a worker thread, so a slow or absent collector never blocks a measurement.
 */
export function createLogger(
  level: LogLevel,
  destination: NodeJS.WritableStream = process.stderr,
  syslog?: SyslogTarget,
): Logger {
  const stream = syslog
    ? pino.transport({
        targets: [
          { target: 'pino/file', level, options: { destination: 2 } },
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
