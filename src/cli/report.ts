import type { GeneralSettings } from '../config/schema.js';
import { serviceSchema } from '../config/schema.js';
import { loadEngine } from '../engine/loader.js';
import { ProbeError, toProbeError } from '../errors.js';
import { type LoadPeer, loadText, runLoad } from '../load/load.js';
import type { Logger } from '../log.js';
import { cpuWatch } from '../measure/quality.js';
import type { RunResult } from '../measure/result.js';
import { appendCsv } from '../store/csv.js';
import { type SummaryHooks, summaryText } from './summary.js';

/**
 * What every measuring command does after its protocol ran: the summary (or --json), the error line,
 * the --csv row, and the exit code. A protocol's command hands in its summary hooks.
 */
export function report(
  result: RunResult,
  extra: Record<string, string | boolean>,
  hooks: SummaryHooks = {},
): number {
  if (extra.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(`${summaryText(result, hooks)}\n`);
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

/** Runs one measurement with live progress on a terminal (none with --json) and reports it. */
export async function measureAndReport(
  extra: Record<string, string | boolean>,
  measure: (progress: <E>(make: () => (e: E) => void) => ((e: E) => void) | undefined) => Promise<RunResult>,
  hooks: SummaryHooks = {},
): Promise<number> {
  const cpu = cpuWatch();
  const result = await measure((make) => (extra.json ? undefined : make()));
  // the flag the service would set: the probe itself was the ceiling (service.cpu_limit's default)
  cpu.apply(result, serviceSchema.cpu_limit.default);
  return report(result, extra, hooks);
}

/** `load <type>`: runs the clients and prints the report (exit 1 when any client failed). */
export async function loadAndReport(
  protocol: string,
  peer: LoadPeer,
  general: GeneralSettings,
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
  const result = await runLoad({
    protocol,
    peer,
    clients,
    rampS: num('ramp', 0),
    general,
    engine: loadEngine(general.engine, log),
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
  process.stdout.write(extra.json ? `${JSON.stringify(result, null, 2)}\n` : `${loadText(result)}\n`);
  return result.failed === 0 ? 0 : 1;
}

/** A `server <type>` command's body: runs until SIGINT/SIGTERM, then closes. */
export async function untilStopped(signal: AbortSignal, close: () => Promise<void>): Promise<number> {
  await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  await close();
  return 0;
}
