import { appendFileSync, statSync } from 'node:fs';
import { ProbeError } from '../errors.js';
import { headlineFigures, type RunResult } from '../measure/result.js';
import type { RunSummary } from './store.js';

/** The columns of every CSV the probe writes: the page's export and the CLI's `--csv` file alike. */
export const CSV_COLUMNS: readonly (keyof RunSummary)[] = [
  'id',
  'target',
  'kind',
  'started_at',
  'finished_at',
  'status',
  'download_mbps',
  'upload_mbps',
  'ping_ms',
  'jitter_ms',
  'loss_percent',
  'download_latency_ms',
  'upload_latency_ms',
  'responsiveness_rpm',
  'bufferbloat_grade',
  'flags',
  'error_code',
  'error',
  'server',
  'engine',
  'trigger',
];

/**
 * RFC 4180: quoted where needed. OWASP's CSV-injection rule: a cell starting with = + - @, a tab or a
 * carriage return is prefixed with ' so spreadsheets do not run it (numbers such as -3.5 stay numbers).
 */
function cell(v: unknown): string {
  let s = v === null || v === undefined ? '' : Array.isArray(v) ? v.join(' ') : String(v);
  if (/^[=+\-@\t\r]/.test(s) && (s.trim() === '' || Number.isNaN(Number(s)))) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const csvHeader = (): string => `${CSV_COLUMNS.join(',')}\r\n`;

export function csvRow(r: Partial<RunSummary>): string {
  return `${CSV_COLUMNS.map((c) => cell(r[c])).join(',')}\r\n`;
}

export function toCsv(rows: readonly RunSummary[]): string {
  return csvHeader() + rows.map(csvRow).join('');
}

/**
 * The Served table's columns: the inbound runs alone, with who tested and how. Speeds are
 * the peer's view (download = what we sent it).
 */
export const INBOUND_CSV_COLUMNS: readonly string[] = [
  'id',
  'kind',
  'started_at',
  'finished_at',
  'status',
  'peer',
  'user',
  'protocol',
  'direction',
  'download_mbps',
  'upload_mbps',
  'bytes_sent',
  'bytes_received',
  'duration_ms',
  'lost_packets',
  'loss_percent',
  'remote_cpu_percent',
  'end',
  'error_code',
  'error',
  'engine',
];

export const inboundCsvHeader = (): string => `${INBOUND_CSV_COLUMNS.join(',')}\r\n`;

export function inboundCsvRow(r: RunSummary): string {
  const flat: Record<string, unknown> = { ...r, ...r.inbound };
  return `${INBOUND_CSV_COLUMNS.map((c) => cell(flat[c])).join(',')}\r\n`;
}

/**
 * A run's summary straight from its result, as the store derives it from its columns: a failed or
 * aborted run's partial figures are no measurement and are left empty.
 */
export function summaryOf(r: RunResult): Omit<RunSummary, 'id'> {
  return {
    target: r.target.id,
    kind: r.target.kind,
    started_at: r.started_at,
    finished_at: r.finished_at,
    status: r.status,
    error_code: r.error?.code ?? null,
    error: r.error?.message ?? null,
    ...headlineFigures(r),
    flags: r.flags,
    engine: r.engine,
    server: r.server.name ?? r.server.host,
    trigger: r.trigger ?? null,
  };
}

/** Appends one run to a CSV file (`--csv`), with the header first when the file is new or empty. */
export function appendCsv(path: string, r: RunResult): void {
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {
    // no file yet: it gets its header
  }
  try {
    appendFileSync(path, (size === 0 ? csvHeader() : '') + csvRow(summaryOf(r)));
  } catch (err) {
    throw new ProbeError('BP_ERR_STORE', `--csv ${path}: ${(err as Error).message}`);
  }
}
