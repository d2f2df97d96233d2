import { type Logger, pino } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * JSON logs to stderr (stdout stays free for `--json` output). Secrets are redacted by key name so a
 * settings dump or a request body can never leak them.
 */
export function createLogger(level: LogLevel, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino(
    {
      level,
      base: { name: 'bandwidth-probe' },
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
    destination,
  );
}
