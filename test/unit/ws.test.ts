import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  frameHeader,
  OP_BINARY,
  OP_CLOSE,
  OP_PING,
  OP_TEXT,
  WsDecoder,
  wsAccept,
} from '../../src/net/ws.js';

function decodeAll(frames: Buffer, expectMasked: boolean, split = 0) {
  const payload: Buffer[] = [];
  const control: [number, string][] = [];
  const d = new WsDecoder(
    expectMasked,
    (p) => payload.push(Buffer.from(p)),
    (op, p) => control.push([op, p.toString()]),
  );
  if (split > 0)
    for (let i = 0; i < frames.length; i += split) d.push(Buffer.from(frames.subarray(i, i + split)));
  else d.push(Buffer.from(frames));
  return { payload: Buffer.concat(payload), control };
}

describe('WebSocket framing (RFC 6455, specs/rmbt.md §2.4)', () => {
  it('computes the accept value of the RFC example', () => {
    expect(wsAccept('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('uses 7-bit, 16-bit and 64-bit lengths', () => {
    expect(frameHeader(OP_TEXT, 125)).toEqual(Buffer.from([0x81, 125]));
    expect(frameHeader(OP_BINARY, 4096)).toEqual(Buffer.from([0x82, 126, 0x10, 0x00]));
    expect(frameHeader(OP_BINARY, 65536)).toEqual(Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]));
    expect(frameHeader(OP_TEXT, 3, Buffer.from([1, 2, 3, 4]))).toEqual(Buffer.from([0x81, 0x83, 1, 2, 3, 4]));
  });

  it('round-trips masked frames of every length class, split at every byte', () => {
    const texts = [Buffer.from('RMBTv1.3.5\n'), Buffer.alloc(300, 7), Buffer.alloc(70000, 9)];
    const wire = Buffer.concat(texts.map((t, i) => encodeFrame(i ? OP_BINARY : OP_TEXT, t, true)));
    for (const split of [1, 3, 14, 4096, 0]) {
      const { payload } = decodeAll(wire, true, split);
      expect(payload.equals(Buffer.concat(texts))).toBe(true);
    }
  });

  it('matches what RMBTD sends: unmasked text frame with the greeting', () => {
    const { payload } = decodeAll(
      Buffer.concat([Buffer.from([0x81, 0x0b]), Buffer.from('RMBTv1.3.5\n')]),
      false,
    );
    expect(payload.toString()).toBe('RMBTv1.3.5\n');
  });

  it('hands control frames over whole and keeps them out of the payload', () => {
    const wire = Buffer.concat([
      encodeFrame(OP_PING, Buffer.from('hi'), false),
      encodeFrame(OP_TEXT, Buffer.from('x'), false),
      encodeFrame(OP_CLOSE, Buffer.alloc(0), false),
    ]);
    const { payload, control } = decodeAll(wire, false, 1);
    expect(payload.toString()).toBe('x');
    expect(control).toEqual([
      [OP_PING, 'hi'],
      [OP_CLOSE, ''],
    ]);
  });

  it('rejects unmasked client frames, masked server frames, reserved bits, bad opcodes and huge frames', () => {
    const bad = (buf: Buffer, masked: boolean) => () => decodeAll(buf, masked);
    expect(bad(encodeFrame(OP_TEXT, Buffer.from('a'), false), true)).toThrow(/unmasked/);
    expect(bad(encodeFrame(OP_TEXT, Buffer.from('a'), true), false)).toThrow(/masked frame from a server/);
    expect(bad(Buffer.from([0xc1, 0x00]), false)).toThrow(/reserved/);
    expect(bad(Buffer.from([0x83, 0x00]), false)).toThrow(/opcode/);
    expect(bad(Buffer.from([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]), false)).toThrow(/too large/);
    expect(bad(Buffer.from([0x89, 126, 0, 200]), false)).toThrow(/control frame/);
  });
});
