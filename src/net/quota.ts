import type { Group } from '../config/fields.js';
/**
 * Daily budgets for our servers (btest-rs server-pro has per-user and per-address byte and
 * session quotas): per source address, the sessions begun and the bytes moved in the last 24 hours, and
 * the bytes of all addresses together. "Daily" is a rolling 24 h window in hourly buckets, so a limit
 * never resets all at once at midnight and memory stays bounded (24 buckets per address, at most
 * MAX_ADDRESSES addresses; the least recently seen is forgotten first).
 */
export interface QuotaLimits {
  /** bytes one address may move in 24 h (0 = no limit) */
  dailyBytesPerAddress: number;
  /** sessions (tests) one address may begin in 24 h (0 = no limit) */
  dailySessionsPerAddress: number;
  /** bytes all addresses together may move in 24 h (0 = no limit) */
  dailyBytes: number;
}

const HOUR_MS = 3_600_000;
const WINDOW_H = 24;
export const MAX_ADDRESSES = 10_000;

interface Bucket {
  hour: number;
  bytes: number;
  sessions: number;
}

/** What a refusal says: which limit, and its figures (for the peer, the log and the metrics). */
export interface QuotaRefusal {
  reason: 'sessions_per_address' | 'bytes_per_address' | 'bytes_total';
  message: string;
}

export class Quota {
  private readonly byAddress = new Map<string, Bucket[]>();
  private readonly total: Bucket[] = [];

  constructor(
    private readonly limits: QuotaLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether any limit is set (without one, nothing is tracked). */
  get active(): boolean {
    const l = this.limits;
    return l.dailyBytesPerAddress > 0 || l.dailySessionsPerAddress > 0 || l.dailyBytes > 0;
  }

  private hour(at = this.now()): number {
    return Math.floor(at / HOUR_MS);
  }

  private static sum(buckets: readonly Bucket[], hour: number, k: 'bytes' | 'sessions'): number {
    let n = 0;
    for (const b of buckets) if (b.hour > hour - WINDOW_H) n += b[k];
    return n;
  }

  private bucket(list: Bucket[], hour: number): Bucket {
    const last = list.at(-1);
    if (last && last.hour === hour) return last;
    const b = { hour, bytes: 0, sessions: 0 };
    list.push(b);
    while (list.length && list[0]!.hour <= hour - WINDOW_H) list.shift();
    return b;
  }

  private listFor(address: string): Bucket[] {
    let list = this.byAddress.get(address);
    if (list) {
      // most recently seen last: Map keeps insertion order
      this.byAddress.delete(address);
    } else {
      list = [];
      if (this.byAddress.size >= MAX_ADDRESSES) this.byAddress.delete(this.byAddress.keys().next().value!);
    }
    this.byAddress.set(address, list);
    return list;
  }

  /** Why a new session from `address` is refused now, or undefined when it may begin. */
  check(address: string): QuotaRefusal | undefined {
    if (!this.active) return undefined;
    const h = this.hour();
    const l = this.limits;
    const mine = this.byAddress.get(address) ?? [];
    const sessions = Quota.sum(mine, h, 'sessions');
    if (l.dailySessionsPerAddress > 0 && sessions >= l.dailySessionsPerAddress)
      return {
        reason: 'sessions_per_address',
        message: `${address} has begun ${sessions} tests in the last 24 hours (the limit is ${l.dailySessionsPerAddress})`,
      };
    const bytes = Quota.sum(mine, h, 'bytes');
    if (l.dailyBytesPerAddress > 0 && bytes >= l.dailyBytesPerAddress)
      return {
        reason: 'bytes_per_address',
        message: `${address} has moved ${bytes} bytes in the last 24 hours (the limit is ${l.dailyBytesPerAddress})`,
      };
    const all = Quota.sum(this.total, h, 'bytes');
    if (l.dailyBytes > 0 && all >= l.dailyBytes)
      return {
        reason: 'bytes_total',
        message: `the server has moved ${all} bytes in the last 24 hours (the limit is ${l.dailyBytes})`,
      };
    return undefined;
  }

  /** A session from `address` begins (counts against the session limit). */
  begin(address: string, at = this.now()): void {
    if (!this.active) return;
    this.bucket(this.listFor(address), this.hour(at)).sessions++;
  }

  /** Bytes a session of `address` moved (both directions count). */
  add(address: string, bytes: number, at = this.now()): void {
    if (!this.active || !(bytes > 0)) return;
    const h = this.hour(at);
    this.bucket(this.listFor(address), h).bytes += bytes;
    this.bucket(this.total, h).bytes += bytes;
  }

  /** Bytes `address` may still move in this window (Infinity without a byte limit). */
  remaining(address: string): number {
    const l = this.limits;
    const h = this.hour();
    let left = Number.POSITIVE_INFINITY;
    if (l.dailyBytesPerAddress > 0)
      left = Math.min(
        left,
        l.dailyBytesPerAddress - Quota.sum(this.byAddress.get(address) ?? [], h, 'bytes'),
      );
    if (l.dailyBytes > 0) left = Math.min(left, l.dailyBytes - Quota.sum(this.total, h, 'bytes'));
    return Math.max(0, left);
  }

  /**
   * What the stored history says was served in the last 24 h (the service seeds the quota at start, so a
   * restart does not hand out a fresh budget).
   */
  seed(sessions: readonly { address: string; at: number; bytes: number }[]): void {
    if (!this.active) return;
    const cutoff = this.now() - WINDOW_H * HOUR_MS;
    for (const s of [...sessions].sort((a, b) => a.at - b.at)) {
      if (s.at <= cutoff) continue;
      this.begin(s.address, s.at);
      this.add(s.address, s.bytes, s.at);
    }
  }
}

/** The daily budgets every server of ours takes, as settings (each server's group spreads them in). */
export const dailyQuotaSchema = {
  max_daily_bytes_per_address: {
    type: 'int',
    default: 0,
    min: 0,
    max: 1e15,
    description:
      'Bytes one client address may move (both directions) in a rolling 24 hours; past it its tests are refused, and a running one is ended (0 = no limit).',
  },
  max_daily_tests_per_address: {
    type: 'int',
    default: 0,
    min: 0,
    max: 100000,
    description: 'Tests one client address may begin in a rolling 24 hours; more are refused (0 = no limit).',
  },
  max_daily_bytes: {
    type: 'int',
    default: 0,
    min: 0,
    max: 1e15,
    description:
      'Bytes all clients together may move in a rolling 24 hours, a budget for a metered line (0 = no limit).',
  },
} as const satisfies Group;

/** A server's daily quota from its settings group (the dailyQuotaSchema keys). */
export function quotaFrom(s: {
  max_daily_bytes_per_address: number;
  max_daily_tests_per_address: number;
  max_daily_bytes: number;
}): Quota {
  return new Quota({
    dailyBytesPerAddress: s.max_daily_bytes_per_address,
    dailySessionsPerAddress: s.max_daily_tests_per_address,
    dailyBytes: s.max_daily_bytes,
  });
}
