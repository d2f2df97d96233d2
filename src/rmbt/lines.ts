import { ProbeError } from '../errors.js';

/** Parsers for RMBT protocol lines (specs/rmbt.md §3). Every parser throws a coded error on bad input. */

export const DEFAULT_CHUNK = 4096;
export const MIN_CHUNK = 4096;
export const MAX_CHUNK = 4194304;
export const MAX_CHUNKS = 300000;
export const MAX_SECONDS = 30;

export const GREETING_VERSION = '1.3.5';
export const ACCEPT_TOKEN = 'ACCEPT TOKEN QUIT';
export const ACCEPT_COMMANDS = 'ACCEPT GETCHUNKS GETTIME PUT PUTNORESULT PING QUIT';

export function parseGreeting(line: string): string {
  const m = /^RMBTv(\S+)$/.exec(line.trim());
  if (!m)
    throw new ProbeError(
      'BP_ERR_PROTOCOL',
      `expected an RMBT greeting, got ${JSON.stringify(line.slice(0, 80))}`,
    );
  return m[1]!;
}

export interface ChunkLimits {
  def: number;
  min: number;
  max: number;
  /** v0.3 servers send a single value and take no chunk-size arguments (§5) */
  dynamic: boolean;
}

export function parseChunkSize(line: string): ChunkLimits {
  const m = /^CHUNKSIZE (\d+)(?: (\d+) (\d+))?$/.exec(line.trim());
  if (!m)
    throw new ProbeError('BP_ERR_PROTOCOL', `expected CHUNKSIZE, got ${JSON.stringify(line.slice(0, 80))}`);
  const def = Number(m[1]);
  const min = m[2] ? Number(m[2]) : def;
  const max = m[3] ? Number(m[3]) : def;
  // RMBT's bounds (§3.1: 4096 … 4194304): a server asking for 64 MiB chunks would cost GBs with 8 threads.
  if (!(min >= MIN_CHUNK && min <= def && def <= max && max <= MAX_CHUNK)) {
    throw new ProbeError('BP_ERR_PROTOCOL', `implausible chunk sizes in ${JSON.stringify(line)}`);
  }
  return { def, min, max, dynamic: m[2] !== undefined };
}

/** `TIME <ns>` (final) or `TIME <ns> BYTES <b>` (intermediate, after PUT): told apart by word count (§3.2). */
export type TimeLine = { ns: number; bytes?: number };

export function parseTime(line: string): TimeLine {
  const m = /^TIME (\d{1,19})(?: BYTES (\d{1,19}))?$/.exec(line.trim());
  if (!m) {
    if (line.trim() === 'ERR') throw new ProbeError('BP_ERR_RMBT_SERVER', 'the server answered ERR');
    throw new ProbeError('BP_ERR_PROTOCOL', `expected TIME, got ${JSON.stringify(line.slice(0, 80))}`);
  }
  return m[2] === undefined ? { ns: Number(m[1]) } : { ns: Number(m[1]), bytes: Number(m[2]) };
}

export type Command =
  | { cmd: 'GETCHUNKS'; count: number; chunkSize?: number }
  | { cmd: 'GETTIME'; seconds: number; chunkSize?: number }
  | { cmd: 'PUT' | 'PUTNORESULT'; chunkSize?: number }
  | { cmd: 'PING' | 'QUIT' | 'OK' }
  | { cmd: 'TOKEN'; token: string }
  | { cmd: 'UNKNOWN'; text: string };

const INT = /^\d{1,12}$/;

/** Server side: up to three words, like RMBTD's `sscanf "%50s %12s %12s"`. Range checks are the caller's. */
export function parseCommand(line: string): Command {
  const words = line.trim().split(/\s+/);
  const [w0 = '', w1, w2] = words;
  const num = (w: string | undefined) => (w !== undefined && INT.test(w) ? Number(w) : undefined);
  switch (w0) {
    case 'TOKEN':
      return w1 ? { cmd: 'TOKEN', token: w1 } : { cmd: 'UNKNOWN', text: line };
    case 'GETCHUNKS':
    case 'GETTIME': {
      const n = num(w1);
      const cs = num(w2);
      if (n === undefined || (w2 !== undefined && cs === undefined)) return { cmd: 'UNKNOWN', text: line };
      return w0 === 'GETCHUNKS'
        ? { cmd: 'GETCHUNKS', count: n, ...(cs !== undefined ? { chunkSize: cs } : {}) }
        : { cmd: 'GETTIME', seconds: n, ...(cs !== undefined ? { chunkSize: cs } : {}) };
    }
    case 'PUT':
    case 'PUTNORESULT': {
      const cs = num(w1);
      if (w1 !== undefined && cs === undefined) return { cmd: 'UNKNOWN', text: line };
      return { cmd: w0, ...(cs !== undefined ? { chunkSize: cs } : {}) };
    }
    case 'PING':
    case 'QUIT':
    case 'OK':
      return words.length === 1 ? { cmd: w0 } : { cmd: 'UNKNOWN', text: line };
    default:
      return { cmd: 'UNKNOWN', text: line };
  }
}
