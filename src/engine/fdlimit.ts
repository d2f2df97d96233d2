import { readdirSync } from 'node:fs';
import type { Logger } from '../log.js';
import { loadAddon } from './native.js';

/**
 * Descriptor budget. Inbound page connections must never take the descriptors the
 * probe's own runs need (up to 20 streams per run plus the control connection, the database, the MQTT
 * socket): the soft RLIMIT_NOFILE is raised to the hard one at start, and the page may hold at most
 * what is left after a reserve for runs.
 */
export const RUN_FD_RESERVE = 256;
/** Never more page connections than this, whatever the limit. */
export const MAX_WEB_CONNECTIONS = 1024;
/** Page connections allowed even on a tiny limit (below that the page would be unusable). */
export const MIN_WEB_CONNECTIONS = 16;

export interface FdLimit {
  before: number;
  soft: number;
  hard: number;
  /** how the limit was raised: the native addon, or not at all */
  via: 'native' | 'none';
}

/** Raises the soft nofile limit to the hard one where the native addon can; reports what it is now. */
export function raiseFdLimit(log?: Logger): FdLimit {
  let out: FdLimit = { before: -1, soft: -1, hard: -1, via: 'none' };
  try {
    const r = loadAddon().raiseNofile?.();
    if (r) out = { ...r, via: 'native' };
  } catch {
    // no native addon (js engine): the limit stays as the process was started with
  }
  if (out.via === 'native' && out.soft !== out.before)
    log?.info({ before: out.before, soft: out.soft, hard: out.hard }, 'raised the open-file limit');
  else if (out.via === 'none') log?.info('open-file limit left as started (no native addon to raise it)');
  return out;
}

/** Descriptors open now (Linux /proc/self/fd); -1 where unknown. */
export function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return -1;
  }
}

/**
 * How many connections the page may hold: what the soft limit leaves after what is open now and the
 * run reserve, within [MIN_WEB_CONNECTIONS, MAX_WEB_CONNECTIONS]. An unknown or unlimited soft limit
 * gives the maximum.
 */
export function webConnectionBudget(soft: number, open = openFds()): number {
  if (soft < 0) return MAX_WEB_CONNECTIONS;
  const left = soft - Math.max(0, open) - RUN_FD_RESERVE;
  return Math.max(MIN_WEB_CONNECTIONS, Math.min(MAX_WEB_CONNECTIONS, left));
}
