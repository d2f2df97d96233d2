import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';

/**
 * RMBT v1 tokens (specs/rmbt.md §3.1): `uuid_start_base64(HMAC-SHA1(key, "uuid_start"))`.
 * A v2 suffix `_#v2#…` may follow; clients pass tokens through verbatim.
 */
export const TOKEN_RE = /^([0-9a-f-]{1,36})_(\d{1,12})_([A-Za-z0-9+/=]{1,50})/;
/** RMBTD's window: MAX_ACCEPT_EARLY and MAX_ACCEPT_LATE in seconds (§3.1 "Time window"). */
export const ACCEPT_EARLY_S = 20;
export const ACCEPT_LATE_S = 90;

export function tokenHmac(key: string | Buffer, uuid: string, start: number): string {
  return createHmac('sha1', key).update(`${uuid}_${start}`).digest('base64');
}

/** What the reference C client does in direct mode: a fresh lowercase UUID and the current second. */
export function makeToken(
  key: string | Buffer,
  startS = Math.floor(Date.now() / 1000),
  uuid = randomUUID(),
): string {
  return `${uuid}_${startS}_${tokenHmac(key, uuid, startS)}`;
}

export type TokenCheck =
  | {
      ok: true;
      uuid: string;
      start: number /** seconds to wait before answering OK (start still ahead) */;
      waitMs: number;
    }
  | { ok: false; reason: 'syntax' | 'hmac' | 'early' | 'late' };

/** Checks a token against any of the keys and the time window. */
export function checkToken(token: string, keys: readonly string[], nowMs = Date.now()): TokenCheck {
  const m = TOKEN_RE.exec(token);
  if (!m) return { ok: false, reason: 'syntax' };
  const [, uuid, startText, mac] = m as unknown as [string, string, string, string];
  const start = Number(startText);
  const given = Buffer.from(mac);
  const match = keys.some((k) => {
    const want = Buffer.from(tokenHmac(k, uuid, start));
    return want.length === given.length && timingSafeEqual(want, given);
  });
  if (!match) return { ok: false, reason: 'hmac' };
  const now = nowMs / 1000;
  if (now < start - ACCEPT_EARLY_S) return { ok: false, reason: 'early' };
  if (now > start + ACCEPT_LATE_S) return { ok: false, reason: 'late' };
  return { ok: true, uuid, start, waitMs: Math.max(0, Math.ceil(start * 1000 - nowMs)) };
}
