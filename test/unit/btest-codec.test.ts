import { describe, expect, it } from 'vitest';
import {
  commandFor,
  decodeCommand,
  decodeJoin,
  decodeMd5Answer,
  decodeStatus,
  encodeCommand,
  encodeJoin,
  encodeMd5Answer,
  encodeOk,
  encodeStatus,
  md5Digest,
  sessionToken,
  udpPayloadFor,
} from '../../src/btest/codec.js';

describe('btest codecs (specs/btest.md)', () => {
  it('encodes the captured RouterOS commands byte for byte (§3)', () => {
    const tcp = {
      proto: 'tcp',
      randomFlag: 1,
      connCount: 0,
      txSize: 0x8000,
      clientBuf: 0,
      remoteTxSpeed: 0,
      localTxSpeed: 0,
    } as const;
    expect(encodeCommand({ ...tcp, ...commandFor('send') }).toString('hex')).toBe(
      '01010100008000000000000000000000',
    );
    expect(encodeCommand({ ...tcp, ...commandFor('receive'), connCount: 10 }).toString('hex')).toBe(
      '0102010a008000000000000000000000',
    );
    expect(
      encodeCommand({
        proto: 'udp',
        ...commandFor('both'),
        randomFlag: 1,
        connCount: 0,
        txSize: 1500,
        clientBuf: 0,
        remoteTxSpeed: 0,
        localTxSpeed: 0,
      }).toString('hex'),
    ).toBe('00030100dc0500000000000000000000');
    expect(
      encodeCommand({ ...tcp, ...commandFor('receive'), remoteTxSpeed: 0xffffffff }).toString('hex'),
    ).toBe('0102010000800000ffffffff00000000');
  });

  it('decodes commands and rejects bad protocol or direction bytes', () => {
    const c = decodeCommand(Buffer.from('0102010a0080000080f0fa0200000000', 'hex'));
    expect(c).toMatchObject({
      proto: 'tcp',
      serverSends: true,
      serverReceives: false,
      connCount: 10,
      txSize: 32768,
      remoteTxSpeed: 50_000_000,
    });
    expect(() => decodeCommand(Buffer.from('02010000000000000000000000000000', 'hex'))).toThrow(
      /protocol byte/,
    );
    expect(() => decodeCommand(Buffer.from('01000000000000000000000000000000', 'hex'))).toThrow(
      /direction byte 0/,
    );
    expect(() => decodeCommand(Buffer.from('01040000000000000000000000000000', 'hex'))).toThrow(
      /direction byte 4/,
    );
    expect(() => decodeCommand(Buffer.alloc(15))).toThrow(/15 bytes/);
  });

  it('secondary join and the token-bearing OK (§6)', () => {
    expect(encodeJoin(0xbc04).toString('hex')).toBe('bc040200000000000000000000000000');
    expect(decodeJoin(encodeJoin(0xbc04))).toBe(0xbc04);
    expect(decodeJoin(Buffer.from('01010100008000000000000000000000', 'hex'))).toBeUndefined();
    expect(encodeOk(0xbc04).toString('hex')).toBe('01bc0400');
    expect(encodeOk().toString('hex')).toBe('01000000');
  });

  it('every session token makes a join that reads as a join, never as a command (§6)', () => {
    // RS-style tokens (both bytes non-zero) with high byte 0x01 made `01 LL 02 …` parse as a TCP command.
    expect(decodeJoin(encodeJoin(0x0102))).toBeUndefined();
    const seen = new Set<number>();
    for (let hi = 0; hi < 256; hi++) {
      for (let lo = 0; lo < 256; lo++) {
        const t = sessionToken(Buffer.from([hi, lo]));
        expect(t >> 8).toBeGreaterThanOrEqual(2);
        expect(t & 0xff).toBeGreaterThanOrEqual(1);
        expect(decodeJoin(encodeJoin(t))).toBe(t);
        seen.add(t);
      }
    }
    expect(seen.size).toBe(254 * 255);
  });

  it('MD5 answer matches the published vector (§4.1)', () => {
    expect(md5Digest('test', Buffer.from('ad32d6f94d28161625f2f390bb895637', 'hex')).toString('hex')).toBe(
      '3c968565bc0314f281a6da1571cf7255',
    );
    const a = encodeMd5Answer('test', 'test', Buffer.from('ad32d6f94d28161625f2f390bb895637', 'hex'));
    expect(a.length).toBe(48);
    expect(a.subarray(16, 21).toString('hex')).toBe('7465737400');
    expect(decodeMd5Answer(a).user).toBe('test');
  });

  it('status message: RS layout, CPU high bit ignored on decode (§8)', () => {
    expect(encodeStatus({ cpu: 18, seq: 1, bytes: 0x036e36 }).toString('hex')).toBe(
      '0792000001000000366e0300',
    );
    // BL §8 capture: 07 8e 00 00 01 00 00 00 10 92 88 03
    expect(decodeStatus(Buffer.from('078e00000100000010928803', 'hex'))).toEqual({
      cpu: 14,
      seq: 1,
      bytes: 0x03889210,
    });
    expect(decodeStatus(Buffer.from('07d407be0100000000000000', 'hex')).cpu).toBe(84);
    expect(() => decodeStatus(Buffer.alloc(12))).toThrow(/status/);
  });

  it('UDP tx_size is the IP packet size (§7)', () => {
    expect(udpPayloadFor(1500, 4)).toBe(1472);
    expect(udpPayloadFor(1500, 6)).toBe(1452);
    expect(udpPayloadFor(28, 4)).toBe(4);
  });
});
