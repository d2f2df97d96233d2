import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import net from 'node:net';

/**
 * RMBT tokens (specs/rmbt.md §3.1).
 * - v1: `uuid_start_base64(HMAC-SHA1(key, "uuid_start"))`.
 * - v2 (spec 1.2.0, research/rmbt-deployments.md F1): the control server appends `_#v2#<base64 of 16
 *   bytes>`: start time (4 bytes, big-endian) ‖ HMAC-SHA256(key, time)[0..8] ‖ HMAC-SHA256(key, time ‖
 *   ip16)[0..4], where ip16 is the address the control server saw, as IPv4-mapped IPv6. The Rust
 *   measurement server checks that part against the address a measurement connection comes from
 *   whenever `#v2#` is present (open-rmbt-server `src/protocol/token.rs` validate_token/validate_v2).
 * Clients pass tokens through verbatim.
 */
export const TOKEN_RE = /^([0-9a-f-]{1,36})_(\d{1,12})_([A-Za-z0-9+/=]{1,50})/;
const V2_MARK = '#v2#';
/** RMBTD's window: MAX_ACCEPT_EARLY and MAX_ACCEPT_LATE in seconds (§3.1 "Time window"). */
export const ACCEPT_EARLY_S = 20;
export const ACCEPT_LATE_S = 90;

export function tokenHmac(key: string | Buffer, uuid: string, start: number): string {
  return createHmac('sha1', key).update(`${uuid}_${start}`).digest('base64');
}

/** An address as the 16 bytes v2 tokens sign: IPv6 as it is, IPv4 as `::ffff:a.b.c.d`. */
export function ip16(address: string): Buffer {
  const out = Buffer.alloc(16);
  const v4 = net.isIPv4(address) ? address : /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (v4) {
    out[10] = 0xff;
    out[11] = 0xff;
    v4.split('.').forEach((o, i) => {
      out[12 + i] = Number(o);
    });
    return out;
  }
  if (!net.isIPv6(address)) throw new Error(`not an IP address: ${address}`);
  const bare = address.replace(/%.*$/, '');
  // An embedded dotted quad (::a.b.c.d) becomes two hex groups first.
  const text = bare.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a, b, c, d) =>
    [((+a << 8) | +b).toString(16), ((+c << 8) | +d).toString(16)].join(':'),
  );
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  groups.forEach((g, i) => {
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return out;
}

function v2Part(key: string | Buffer, startS: number, address: string): string {
  const time = Buffer.alloc(4);
  time.writeUInt32BE(startS >>> 0);
  const packet = createHmac('sha256', key).update(time).digest().subarray(0, 8);
  const ip = createHmac('sha256', key).update(time).update(ip16(address)).digest().subarray(0, 4);
  return Buffer.concat([time, packet, ip]).toString('base64');
}

/**
 * What the reference C client does in direct mode: a fresh lowercase UUID and the current second. With
 * `v2For` (the client address the control server saw) the v2 part is appended as CTRL does.
 */
export function makeToken(
  key: string | Buffer,
  startS = Math.floor(Date.now() / 1000),
  uuid = randomUUID(),
  v2For?: string,
): string {
  const v1 = `${uuid}_${startS}_${tokenHmac(key, uuid, startS)}`;
  return v2For ? `${v1}_${V2_MARK}${v2Part(key, startS, v2For)}` : v1;
}

export type TokenCheck =
  | {
      ok: true;
      uuid: string;
      start: number;
      /** seconds to wait before answering OK (start still ahead) */
      waitMs: number;
      version: 1 | 2;
    }
  | { ok: false; reason: 'syntax' | 'hmac' | 'early' | 'late' | 'ip' };

function window(start: number, nowMs: number): 'early' | 'late' | undefined {
  const now = nowMs / 1000;
  if (now < start - ACCEPT_EARLY_S) return 'early';
  if (now > start + ACCEPT_LATE_S) return 'late';
  return undefined;
}

/**
 * Checks a token against any of the keys and the time window. When it carries a v2 part and the peer's
 * address is known, the v2 part decides, bound to that address (as the Rust server does); without an
 * address only the v1 part is checked (as RMBTD does, which stops reading at the v2 suffix).
 */
export function checkToken(
  token: string,
  keys: readonly string[],
  nowMs = Date.now(),
  peer?: string,
): TokenCheck {
  const m = TOKEN_RE.exec(token);
  if (!m) return { ok: false, reason: 'syntax' };
  const [, uuid, startText] = m as unknown as [string, string, string, string];
  const v2 = token.indexOf(V2_MARK);
  if (v2 >= 0 && peer) {
    const raw = Buffer.from(token.slice(v2 + V2_MARK.length), 'base64');
    if (raw.length !== 16) return { ok: false, reason: 'syntax' };
    const time = raw.readUInt32BE(0);
    const key = keys.find((k) => {
      const own = Buffer.from(v2Part(k, time, peer), 'base64');
      return timingSafeEqual(own.subarray(4, 12), raw.subarray(4, 12));
    });
    if (key === undefined) return { ok: false, reason: 'hmac' };
    const own = Buffer.from(v2Part(key, time, peer), 'base64');
    if (!timingSafeEqual(own.subarray(12), raw.subarray(12))) return { ok: false, reason: 'ip' };
    // 32-bit time: the value nearest to now (valid until 2106, then it wraps, as RUSTD reconstructs it).
    const bad = window(time, nowMs);
    if (bad) return { ok: false, reason: bad };
    return { ok: true, uuid, start: time, waitMs: Math.max(0, Math.ceil(time * 1000 - nowMs)), version: 2 };
  }
  const start = Number(startText);
  const given = Buffer.from(m[3]!);
  const match = keys.some((k) => {
    const want = Buffer.from(tokenHmac(k, uuid, start));
    return want.length === given.length && timingSafeEqual(want, given);
  });
  if (!match) return { ok: false, reason: 'hmac' };
  const bad = window(start, nowMs);
  if (bad) return { ok: false, reason: bad };
  return { ok: true, uuid, start, waitMs: Math.max(0, Math.ceil(start * 1000 - nowMs)), version: 1 };
}
