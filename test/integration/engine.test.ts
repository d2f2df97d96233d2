import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineJob } from '../../src/engine/types.js';
import { Channel } from '../../src/net/channel.js';
import { encodeFrame, OP_BINARY } from '../../src/net/ws.js';
import { ENGINES } from '../helpers/rmbt.js';

/** A connected pair on loopback: `a` is a Channel (the engine side), `b` a raw socket (the peer). */
async function pair(): Promise<{ a: Channel; b: net.Socket; close(): void }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => a.once('connect', r));
  const b = await accepted;
  server.close();
  return {
    a: new Channel(a),
    b,
    close() {
      a.destroy();
      b.destroy();
    },
  };
}

/** n chunks of cs bytes, payload all 0xFF (a scanner would stop early), terminators 0x00 … 0xFF. */
function chunks(n: number, cs: number): Buffer {
  const buf = Buffer.alloc(n * cs, 0xff);
  for (let i = 1; i <= n; i++) buf[i * cs - 1] = i === n ? 0xff : 0x00;
  return buf;
}

const recvJob = (cs: number): EngineJob => ({
  mode: 'receive',
  framing: { kind: 'chunks', chunkSize: cs },
  sampleNs: 1e6,
  idleTimeoutMs: 2000,
  maxDurationMs: 5000,
});

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup) c();
  cleanup = [];
});

describe.each(ENGINES)('engine contract, $name', ({ make }) => {
  for (const cs of [4096, 65536, 1 << 20]) {
    it(`receive: counts chunks of ${cs} by offset, stops at the 0xFF chunk, returns bytes read past the end`, async () => {
      const p = await pair();
      cleanup.push(p.close);
      const n = 12;
      const data = Buffer.concat([chunks(n, cs), Buffer.from('TIME 123\n')]);
      // Deliver in odd pieces so chunk boundaries fall in the middle of reads.
      const run = make().run([p.a], recvJob(cs));
      for (let off = 0; off < data.length; off += 7777) p.b.write(data.subarray(off, off + 7777));
      const [out] = await run.done;
      expect(out!.error).toBeUndefined();
      expect(out!.bytes).toBe(n * cs);
      expect(out!.points.at(-1)!.b).toBe(n * cs);
      expect(await p.a.readLine(1000)).toBe('TIME 123');
    });
  }

  it('receive: payload buffered before the engine starts is counted first', async () => {
    const p = await pair();
    cleanup.push(p.close);
    p.b.write(Buffer.concat([Buffer.from('HELLO\n'), chunks(3, 4096)]));
    expect(await p.a.readLine(1000)).toBe('HELLO');
    await new Promise((r) => setTimeout(r, 50)); // the chunks now sit in the channel's buffer
    const [out] = await make().run([p.a], recvJob(4096)).done;
    expect(out!.bytes).toBe(3 * 4096);
    expect(out!.error).toBeUndefined();
  });

  it('receive inside WebSocket frames: masked client frames, a chunk spread over several frames', async () => {
    const p = await pair();
    cleanup.push(p.close);
    p.a.enableWs('server');
    const cs = 8192;
    const data = chunks(4, cs);
    const frames: Buffer[] = [];
    for (let off = 0; off < data.length; off += 3000)
      frames.push(encodeFrame(OP_BINARY, data.subarray(off, off + 3000), true));
    const run = make().run([p.a], recvJob(cs));
    p.b.write(Buffer.concat(frames));
    const [out] = await run.done;
    expect(out!.error).toBeUndefined();
    expect(out!.bytes).toBe(4 * cs);
  });

  it('send: n pre-framed chunks, the last ends in 0xFF; the peer counts exactly n × cs', async () => {
    const p = await pair();
    cleanup.push(p.close);
    const cs = 65536;
    const got: Buffer[] = [];
    p.b.on('data', (d) => got.push(d));
    const job: EngineJob = {
      mode: 'send',
      framing: { kind: 'chunks', chunkSize: cs },
      chunks: [p.a.chunkSet(cs, true)],
      until: { count: 40 },
      sampleNs: 1e6,
      idleTimeoutMs: 2000,
    };
    const [out] = await make().run([p.a], job).done;
    expect(out!.bytes).toBe(40 * cs);
    await new Promise((r) => setTimeout(r, 200));
    const all = Buffer.concat(got);
    expect(all.length).toBe(40 * cs);
    for (let i = 1; i <= 40; i++) expect(all[i * cs - 1]).toBe(i === 40 ? 0xff : 0x00);
  });

  it('send for a duration: stops on time, and what the peer said meanwhile is handed back', async () => {
    const p = await pair();
    cleanup.push(p.close);
    p.b.on('data', () => {});
    p.b.write('TIME 1 BYTES 2\n');
    const job: EngineJob = {
      mode: 'send',
      framing: { kind: 'chunks', chunkSize: 4096 },
      chunks: [p.a.chunkSet(4096, true)],
      until: { durationNs: 300e6 },
      sampleNs: 1e6,
      idleTimeoutMs: 2000,
    };
    const [out] = await make().run([p.a], job).done;
    expect(out!.error).toBeUndefined();
    expect(out!.endNs).toBeGreaterThanOrEqual(300e6);
    expect(await p.a.readLine(1000)).toBe('TIME 1 BYTES 2');
  });

  it('a peer that closes mid-stream ends the stream with BP_ERR_PEER_CLOSED, not an exception', async () => {
    const p = await pair();
    cleanup.push(p.close);
    const run = make().run([p.a], recvJob(4096));
    p.b.end(chunks(5, 4096).subarray(0, 3 * 4096));
    const [out] = await run.done;
    expect(out!.error!.code).toBe('BP_ERR_PEER_CLOSED');
    expect(out!.bytes).toBe(3 * 4096);
  });

  it('a silent peer ends the stream with BP_ERR_STALLED after the idle timeout', async () => {
    const p = await pair();
    cleanup.push(p.close);
    const [out] = await make().run([p.a], { ...recvJob(4096), idleTimeoutMs: 300 } as EngineJob).done;
    expect(out!.error!.code).toBe('BP_ERR_STALLED');
  });

  it('abort ends every stream with BP_ERR_ABORTED', async () => {
    const p1 = await pair();
    const p2 = await pair();
    cleanup.push(p1.close, p2.close);
    const run = make().run([p1.a, p2.a], recvJob(4096));
    setTimeout(() => run.abort(), 100);
    const out = await run.done;
    expect(out.map((o) => o.error?.code)).toEqual(['BP_ERR_ABORTED', 'BP_ERR_ABORTED']);
  });
});
