import { createHash } from 'node:crypto';
import { ProbeError } from '../errors.js';

/**
 * btest wire codecs (specs/btest.md §2–§8). Command fields are little-endian; the UDP port announcement
 * and the datagram sequence number are big-endian; status fields are little-endian.
 */
export const HELLO = Buffer.from([1, 0, 0, 0]);
export const AUTH_OK = 0x01;
export const AUTH_MD5 = 0x02;
export const AUTH_ECSRP5 = 0x03;
export const AUTH_FAILED = Buffer.from([0, 0, 0, 0]);
/** The client's UDP port is the announced server base port + 256 (§7). */
export const UDP_CLIENT_OFFSET = 256;
export const STATUS_SIZE = 12;

export type Direction = 'receive' | 'send' | 'both';

export interface Command {
  proto: 'tcp' | 'udp';
  /** server's view: bit 0 = server receives (client sends), bit 1 = server sends (client receives) */
  serverReceives: boolean;
  serverSends: boolean;
  /** RouterOS default random-data=no sends 0x01 (§3 quirk) */
  randomFlag: number;
  /** 0 for a single connection, else N */
  connCount: number;
  /** TCP: 32768 from RouterOS; UDP: the packet size the server sends with */
  txSize: number;
  clientBuf: number;
  /** bit/s the server should send at, 0 = unlimited */
  remoteTxSpeed: number;
  /** bit/s the client will send at, 0 = unlimited */
  localTxSpeed: number;
}

/** The client's direction maps to the server's view inverted (§3 "Direction mapping"). */
export function commandFor(dir: Direction): Pick<Command, 'serverReceives' | 'serverSends'> {
  return { serverReceives: dir !== 'receive', serverSends: dir !== 'send' };
}

export function encodeCommand(c: Command): Buffer {
  const b = Buffer.alloc(16);
  b[0] = c.proto === 'tcp' ? 1 : 0;
  b[1] = (c.serverReceives ? 1 : 0) | (c.serverSends ? 2 : 0);
  b[2] = c.randomFlag & 0xff;
  b[3] = c.connCount <= 1 ? 0 : c.connCount;
  b.writeUInt16LE(c.txSize & 0xffff, 4);
  b.writeUInt16LE(c.clientBuf & 0xffff, 6);
  b.writeUInt32LE(c.remoteTxSpeed >>> 0, 8);
  b.writeUInt32LE(c.localTxSpeed >>> 0, 12);
  return b;
}

/** Server side: reject proto > 1, direction 0 or > 3 (§2, RS recv_command). */
export function decodeCommand(b: Buffer): Command {
  if (b.length !== 16) throw new ProbeError('BP_ERR_PROTOCOL', `btest command of ${b.length} bytes`);
  if (b[0]! > 1) throw new ProbeError('BP_ERR_PROTOCOL', `btest command with protocol byte ${b[0]}`);
  const dir = b[1]!;
  if (dir === 0 || dir > 3)
    throw new ProbeError('BP_ERR_PROTOCOL', `btest command with direction byte ${dir}`);
  return {
    proto: b[0] === 1 ? 'tcp' : 'udp',
    serverReceives: (dir & 1) !== 0,
    serverSends: (dir & 2) !== 0,
    randomFlag: b[2]!,
    connCount: b[3]!,
    txSize: b.readUInt16LE(4),
    clientBuf: b.readUInt16LE(6),
    remoteTxSpeed: b.readUInt32LE(8),
    localTxSpeed: b.readUInt32LE(12),
  };
}

/** A secondary connection's join (§6): token big-endian in bytes 0–1, 0x02 in byte 2, zeros. */
export function encodeJoin(token: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16BE(token, 0);
  b[2] = 0x02;
  return b;
}

/**
 * A session token for the OK word (§6) from two random bytes. RS only makes both bytes non-zero, but a
 * token whose high byte is 0x01 turns the join `01 LL 02 00…` into something that reads as a TCP command
 * (byte 0 = 1): the server would reject it as a malformed command. Our tokens keep the high byte ≥ 2
 * and the low byte non-zero, so `decodeJoin` can tell them apart by byte 0 alone.
 */
export function sessionToken(random: Buffer): number {
  const hi = 2 + (random[0]! % 254);
  const lo = 1 + (random[1]! % 255);
  return (hi << 8) | lo;
}

/** A join has a first byte ≥ 2 (a command's is 0 or 1; see sessionToken) and 0x02 in byte 2. */
export function decodeJoin(b: Buffer): number | undefined {
  if (b.length !== 16 || b[0]! < 2 || b[2] !== 0x02) return undefined;
  return b.readUInt16BE(0);
}

/** OK word: `01 00 00 00`, or `01 TT TT 00` carrying the multi-connection token (§6). */
export function encodeOk(token?: number): Buffer {
  const b = Buffer.from([1, 0, 0, 0]);
  if (token) b.writeUInt16BE(token, 1);
  return b;
}

/** Legacy MD5 response digest (§4.1): MD5(password ‖ MD5(password ‖ challenge)). */
export function md5Digest(password: string, challenge: Buffer): Buffer {
  const pw = Buffer.from(password, 'utf8');
  const inner = createHash('md5').update(pw).update(challenge).digest();
  return createHash('md5').update(pw).update(inner).digest();
}

/** The 48-byte MD5 answer: digest and the user name NUL-padded to 32 bytes. */
export function encodeMd5Answer(user: string, password: string, challenge: Buffer): Buffer {
  const b = Buffer.alloc(48);
  md5Digest(password, challenge).copy(b, 0);
  Buffer.from(user, 'utf8').subarray(0, 32).copy(b, 16);
  return b;
}

export function decodeMd5Answer(b: Buffer): { digest: Buffer; user: string } {
  const nameField = b.subarray(16, 48);
  const nul = nameField.indexOf(0);
  return { digest: b.subarray(0, 16), user: nameField.subarray(0, nul < 0 ? 32 : nul).toString('utf8') };
}

export interface Status {
  /** CPU load percent (byte & 0x7f, clamped to 100) */
  cpu: number;
  seq: number;
  /** bytes the sender of this message received from its peer in the last interval */
  bytes: number;
}

/** 12-byte status (§8, RS code layout): 07, 0x80|cpu, 2 reserved, seq u32 LE, bytes u32 LE. */
export function encodeStatus(s: Status): Buffer {
  const b = Buffer.alloc(STATUS_SIZE);
  b[0] = 0x07;
  b[1] = 0x80 | Math.max(0, Math.min(100, Math.round(s.cpu)));
  b.writeUInt32LE(s.seq >>> 0, 4);
  b.writeUInt32LE(Math.min(s.bytes, 0xffffffff) >>> 0, 8);
  return b;
}

export function decodeStatus(b: Buffer): Status {
  if (b.length !== STATUS_SIZE || b[0] !== 0x07)
    throw new ProbeError('BP_ERR_PROTOCOL', 'not a btest status message');
  return { cpu: Math.min(100, b[1]! & 0x7f), seq: b.readUInt32LE(4), bytes: b.readUInt32LE(8) };
}

/** UDP payload for a `tx_size`: the IPv4 packet size reading (§7 recommendation): minus 28 (IPv6: 48). */
export function udpPayloadFor(txSize: number, family: 4 | 6): number {
  return Math.max(4, txSize - (family === 6 ? 48 : 28));
}

/** Status messages in a byte stream that carries nothing else (the peer's words while we send). */
export function statusesIn(buf: Buffer): Status[] {
  const out: Status[] = [];
  // A duplicate OK word (btest-opensource after MD5, §12 item 6) may come first.
  const start = buf.subarray(0, 4).equals(Buffer.from([1, 0, 0, 0])) ? 4 : 0;
  for (let o = start; o + STATUS_SIZE <= buf.length; o += STATUS_SIZE) {
    if (buf[o] !== 0x07) break;
    out.push(decodeStatus(buf.subarray(o, o + STATUS_SIZE)));
  }
  return out;
}
