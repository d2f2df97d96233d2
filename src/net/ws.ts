import { createHash, randomBytes } from 'node:crypto';
import type { WsResume } from '../engine/types.js';
import { ProbeError } from '../errors.js';

/**
 * RFC 6455 framing, as RMBT uses it (specs/rmbt.md §2.4): lines go as text frames, data as binary
 * frames, client frames are masked, nothing is ever compressed. Written by hand rather than with `ws`
 * because the measurement loop needs the raw socket: chunk bytes go out as prepared frames and arrive
 * as a streamed payload, never as per-message buffers.
 */
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const OP_CONT = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;
/** Largest frame we accept: the RMBT maximum chunk (4 MiB) plus slack. */
export const MAX_FRAME = 4 * 1024 * 1024 + 64;

export function wsAccept(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

export function newWsKey(): string {
  return randomBytes(16).toString('base64');
}

/** Frame header (FIN set) for a payload of `len` bytes, with the mask key appended when given. */
export function frameHeader(opcode: number, len: number, maskKey?: Buffer): Buffer {
  const maskBit = maskKey ? 0x80 : 0;
  let head: Buffer;
  if (len < 126) {
    head = Buffer.allocUnsafe(2);
    head[1] = maskBit | len;
  } else if (len < 65536) {
    head = Buffer.allocUnsafe(4);
    head[1] = maskBit | 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.allocUnsafe(10);
    head[1] = maskBit | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = 0x80 | opcode;
  return maskKey ? Buffer.concat([head, maskKey]) : head;
}

/** XOR `buf` in place with the 4-byte key, starting at key position `offset`. */
export function applyMask(buf: Buffer, key: Buffer, offset = 0): void {
  for (let i = 0; i < buf.length; i++) buf[i]! ^= key[(i + offset) & 3]!;
}

/** A whole frame (header + payload); the payload is copied before masking. */
export function encodeFrame(opcode: number, payload: Buffer, mask: boolean): Buffer {
  if (!mask) return Buffer.concat([frameHeader(opcode, payload.length), payload]);
  const key = randomBytes(4);
  const body = Buffer.from(payload);
  applyMask(body, key);
  return Buffer.concat([frameHeader(opcode, payload.length, key), body]);
}

export interface WsDecoderOptions {
  maxFrame?: number;
  /**
   * `at`: when the message completed (process.hrtime.bigint()), given when a native loop gathered it and
   * hands it over later; absent, it is now. `native`: a native loop may drive the stream (it keeps the
   * text messages, answers pings and the close): only when nobody else writes to it during a test.
   */
  text?: { max: number; onMessage(msg: Buffer, at?: bigint): void; native?: boolean };
}

/**
 * Streaming decoder. Data frame payloads (text, binary, continuation) are passed on as they arrive,
 * unmasked, without waiting for the frame to complete; control frames are gathered and handed over whole.
 */
export class WsDecoder {
  private head = Buffer.alloc(14);
  private headLen = 0;
  private remaining = 0;
  private opcode = 0;
  private mask: Buffer | undefined;
  private maskPos = 0;
  private control: Buffer[] = [];
  private inPayload = false;
  /** the opcode of the data message under way (continuation frames carry 0) and its FIN bit */
  private msgOp = 0;
  private fin = true;
  private text: Buffer[] = [];
  private textLen = 0;
  private readonly maxFrame: number;

  /** True between frames: a native loop can take over the raw stream from here. */
  get atFrameStart(): boolean {
    return !this.inPayload && this.headLen === 0;
  }

  /**
   * Where a native loop in text mode takes over: the decoder's state inside binary data (a header half
   * read, or the rest of a binary frame), which the loop resumes from; undefined inside a text message
   * or a control frame (those are short: the caller tries later or stays with js). The decoder starts
   * afresh after this: the loop hands the stream back between messages or not at all.
   */
  handOver(): WsResume | undefined {
    const textOpen = this.msgOp === OP_TEXT && (!this.fin || this.textLen > 0);
    if (textOpen) return undefined;
    if (this.inPayload && (this.opcode >= 8 || (this.opts.text && this.msgOp === OP_TEXT))) return undefined;
    const out: WsResume = {
      header: Buffer.from(this.head.subarray(0, this.inPayload ? 0 : this.headLen)),
      remaining: this.inPayload ? this.remaining : 0,
      fin: this.fin,
      ...(this.inPayload && this.mask ? { mask: Buffer.from(this.mask) } : {}),
      maskPos: this.maskPos,
    };
    this.headLen = 0;
    this.remaining = 0;
    this.inPayload = false;
    this.msgOp = 0;
    this.fin = true;
    this.mask = undefined;
    this.maskPos = 0;
    return out;
  }

  /**
   * `opts.text`: text messages are gathered whole (at most `max` bytes, else a protocol error) and handed
   * to `onMessage` instead of flowing on as payload (ndt7's measurements between its binary load);
   * `opts.maxFrame`: the largest frame accepted (default MAX_FRAME).
   */
  constructor(
    private readonly expectMasked: boolean,
    private readonly onPayload: (buf: Buffer) => void,
    private readonly onControl: (opcode: number, payload: Buffer) => void,
    private readonly opts: WsDecoderOptions = {},
  ) {
    this.maxFrame = opts.maxFrame ?? MAX_FRAME;
  }

  /** Throws ProbeError(BP_ERR_PROTOCOL) on a malformed frame; the caller closes the connection. */
  push(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) {
      if (!this.inPayload) {
        off = this.readHeader(buf, off);
        if (!this.inPayload) return;
        if (this.remaining === 0) this.endFrame();
        continue;
      }
      const n = Math.min(this.remaining, buf.length - off);
      const piece = buf.subarray(off, off + n);
      off += n;
      this.remaining -= n;
      if (this.mask) {
        applyMask(piece, this.mask, this.maskPos);
        this.maskPos = (this.maskPos + n) & 3;
      }
      if (this.opcode >= 8) this.control.push(Buffer.from(piece));
      else if (this.opts.text && this.msgOp === OP_TEXT) this.addText(piece);
      else this.onPayload(piece);
      if (this.remaining === 0) this.endFrame();
    }
  }

  private readHeader(buf: Buffer, off: number): number {
    while (off < buf.length) {
      this.head[this.headLen++] = buf[off++]!;
      const need = this.headerSize();
      if (need !== undefined && this.headLen === need) {
        this.startFrame();
        return off;
      }
    }
    return off;
  }

  /** Total header size once enough of it is known, else undefined. */
  private headerSize(): number | undefined {
    if (this.headLen < 2) return undefined;
    const b1 = this.head[1]!;
    const len7 = b1 & 0x7f;
    const maskLen = b1 & 0x80 ? 4 : 0;
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + maskLen;
  }

  private startFrame(): void {
    const b0 = this.head[0]!;
    const b1 = this.head[1]!;
    if (b0 & 0x70)
      throw new ProbeError(
        'BP_ERR_PROTOCOL',
        'WebSocket frame with reserved bits (compression is not negotiated)',
      );
    this.opcode = b0 & 0x0f;
    if (![OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG].includes(this.opcode)) {
      throw new ProbeError('BP_ERR_PROTOCOL', `unknown WebSocket opcode ${this.opcode}`);
    }
    const masked = (b1 & 0x80) !== 0;
    if (masked !== this.expectMasked) {
      throw new ProbeError(
        'BP_ERR_PROTOCOL',
        masked ? 'masked frame from a server' : 'unmasked frame from a client',
      );
    }
    const len7 = b1 & 0x7f;
    let pos = 2;
    let len = len7;
    if (len7 === 126) {
      len = this.head.readUInt16BE(2);
      pos = 4;
    } else if (len7 === 127) {
      const big = this.head.readBigUInt64BE(2);
      if (big > BigInt(this.maxFrame))
        throw new ProbeError('BP_ERR_PROTOCOL', `WebSocket frame of ${big} bytes is too large`);
      len = Number(big);
      pos = 10;
    }
    if (len > this.maxFrame)
      throw new ProbeError('BP_ERR_PROTOCOL', `WebSocket frame of ${len} bytes is too large`);
    if (this.opcode >= 8 && len > 125)
      throw new ProbeError('BP_ERR_PROTOCOL', 'WebSocket control frame too large');
    if (this.opcode < 8) {
      this.fin = (b0 & 0x80) !== 0;
      if (this.opcode !== OP_CONT) this.msgOp = this.opcode;
    }
    this.mask = masked ? Buffer.from(this.head.subarray(pos, pos + 4)) : undefined;
    this.maskPos = 0;
    this.remaining = len;
    this.inPayload = true;
    this.headLen = 0;
  }

  private addText(piece: Buffer): void {
    this.textLen += piece.length;
    if (this.textLen > this.opts.text!.max)
      throw new ProbeError(
        'BP_ERR_PROTOCOL',
        `WebSocket text message longer than ${this.opts.text!.max} bytes`,
      );
    this.text.push(Buffer.from(piece));
  }

  private endFrame(): void {
    this.inPayload = false;
    if (this.opcode >= 8) {
      const payload = Buffer.concat(this.control);
      this.control = [];
      this.onControl(this.opcode, payload);
    } else if (this.fin && this.opts.text && this.msgOp === OP_TEXT) {
      const msg = Buffer.concat(this.text);
      this.text = [];
      this.textLen = 0;
      this.opts.text.onMessage(msg);
    }
  }
}
