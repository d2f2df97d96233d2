import dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import type { UdpJob } from '../../src/engine/types.js';
import { Rfc3550Jitter, SeqTracker } from '../../src/measure/seq.js';
import { ENGINES } from '../helpers/rmbt.js';

const base = (over: Partial<UdpJob>): UdpJob => ({
  bindHost: '127.0.0.1',
  bindPort: 0,
  peerHost: '127.0.0.1',
  peerPort: 9,
  connect: false,
  family: 4,
  receive: false,
  durationNs: 1e9,
  sampleNs: 100e6,
  ...over,
});

/** Sends datagrams with the given sequence numbers from a plain dgram socket (the test's own peer). */
async function sendSeqs(port: number, seqs: number[], from = '127.0.0.1'): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, from, r));
  for (const q of seqs) {
    const b = Buffer.alloc(100);
    b.writeUInt32BE(q >>> 0, 0);
    await new Promise<void>((r) => s.send(b, port, '127.0.0.1', () => r()));
  }
  s.close();
}

async function freePorts(n: number): Promise<number[]> {
  const socks = await Promise.all(
    Array.from({ length: n }, async () => {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
      return s;
    }),
  );
  const ports = socks.map((s) => s.address().port);
  for (const s of socks) s.close();
  return ports;
}

describe('RFC 3550 §6.4.1 jitter', () => {
  it('J += (|D| − J) / 16 over transit-time differences', () => {
    const j = new Rfc3550Jitter();
    for (const t of [10, 12, 11, 15]) j.push(t);
    // D = 2, 1, 4: J = 2/16 = 0.125; + (1 − 0.125)/16 = 0.1796875; + (4 − 0.1796875)/16 = 0.418457…
    expect(j.jitter).toBeCloseTo(0.125 + (1 - 0.125) / 16 + (4 - (0.125 + (1 - 0.125) / 16)) / 16, 12);
    const flat = new Rfc3550Jitter();
    for (let i = 0; i < 100; i++) flat.push(5);
    expect(flat.jitter).toBe(0);
  });
});

describe('sequence tracking (specs/btest.md §7)', () => {
  it('counts gaps as lost, late packets back, duplicates apart, across u32 wrap-around', () => {
    const t = new SeqTracker();
    for (const q of [0xfffffffe, 0xffffffff, 2, 0, 0, 1, 7, 7, 3]) expect(t.push(q)).toBe(true);
    // after 0xffffffff: 2 (0,1 lost=2), 0 late (lost 1, reordered 1), 0 dup, 1 late (lost 0, reordered 2),
    // 7 (3..6 lost = 4), 7 dup, 3 late (lost 3, reordered 3)
    expect({ lost: t.lost, duplicates: t.duplicates, reordered: t.reordered, packets: t.packets }).toEqual({
      lost: 3,
      duplicates: 2,
      reordered: 3,
      packets: 9,
    });
  });
});

describe.each(ENGINES)('UDP loop, $name engine', ({ name, make }) => {
  it('receiver: exact loss, duplicate and reorder counts from a scripted sender', async () => {
    const engine = make();
    const rx = await engine.udp(base({ receive: true, durationNs: 1.5e9 }));
    const done = rx.start();
    // 0..99 with 10..14 missing, 20 twice, 31 before 30, then 200 (gap of 100: 100..199 lost)
    const seqs: number[] = [];
    for (let i = 0; i < 100; i++) if (i < 10 || i > 14) seqs.push(i);
    seqs.splice(seqs.indexOf(21), 0, 20);
    const i30 = seqs.indexOf(30);
    [seqs[i30], seqs[i30 + 1]] = [seqs[i30 + 1]!, seqs[i30]!];
    seqs.push(200);
    await sendSeqs(rx.port, seqs);
    const out = await done;
    expect(out.error).toBeUndefined();
    expect(out.packets).toBe(seqs.length);
    expect(out.duplicates).toBe(1);
    expect(out.reordered).toBe(1);
    expect(out.lost).toBe(5 + 100);
    expect(out.bytes).toBe(seqs.length * 100);
  });

  it('unconnected (NAT) mode accepts any source port of the peer and ignores other addresses', async () => {
    const engine = make();
    const rx = await engine.udp(base({ receive: true, durationNs: 1e9 }));
    const done = rx.start();
    await sendSeqs(rx.port, [1, 2, 3]);
    await sendSeqs(rx.port, [4, 5], '127.0.0.2');
    const out = await done;
    expect(out.packets).toBe(3);
    expect(out.foreign).toBe(2);
  });

  it('forged datagrams (other port; impossible jumps ahead or behind) are foreign, not loss', async () => {
    const engine = make();
    const rx = await engine.udp(base({ receive: true, durationNs: 1.5e9, lockPort: true }));
    const done = rx.start();
    const real = Array.from({ length: 50 }, (_, i) => i);
    // the real peer's port is locked by its first datagram; then a forger on the same address but
    // another port, and forged numbers from the real port: 2^30 ahead, and far behind
    const peer = dgram.createSocket('udp4');
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
    const send = (q: number, sock = peer) =>
      new Promise<void>((r) => {
        const b = Buffer.alloc(100);
        b.writeUInt32BE(q >>> 0, 0);
        sock.send(b, rx.port, '127.0.0.1', () => r());
      });
    for (const q of real.slice(0, 25)) await send(q);
    await sendSeqs(
      rx.port,
      Array.from({ length: 200 }, () => 0x40000000),
    ); // another port
    await send(0x40000000); // an impossible jump from the real port
    await send(0x7fff0000);
    for (const q of real.slice(25)) await send(q);
    await send(49 - 5000); // behind the window: not a late packet of ours
    peer.close();
    const out = await done;
    expect(out.error).toBeUndefined();
    expect(out.packets).toBe(50);
    expect(out.lost).toBe(0);
    expect(out.reordered).toBe(0);
    expect(out.foreign).toBe(200 + 2 + 1);
  });

  it('a real outage (a jump the elapsed time allows) is still loss', async () => {
    const engine = make();
    const rx = await engine.udp(base({ receive: true, durationNs: 1.5e9, lockPort: true }));
    const done = rx.start();
    const peer = dgram.createSocket('udp4');
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
    const send = (q: number) =>
      new Promise<void>((r) => {
        const b = Buffer.alloc(100);
        b.writeUInt32BE(q >>> 0, 0);
        peer.send(b, rx.port, '127.0.0.1', () => r());
      });
    await send(1);
    await new Promise((r) => setTimeout(r, 200)); // 200 ms: up to 4096 + 2 M datagrams may be gone
    await send(1_000_002);
    peer.close();
    const out = await done;
    expect(out.packets).toBe(2);
    expect(out.lost).toBe(1_000_000);
    expect(out.foreign).toBe(0);
  });

  const rate = name === 'native' ? 100e6 : 10e6;
  it(`paced send at ${rate / 1e6} Mbit/s: the peer receives every datagram, in order, at the rate asked for`, async () => {
    const engine = make();
    const rx = await engine.udp(base({ receive: true, durationNs: 2e9 }));
    const tx = await engine.udp(
      base({
        peerPort: rx.port,
        connect: true,
        send: { payload: 1472, paceBytes: 1500, rateBps: rate, seqStart: 2, tsOffset: 4 },
        durationNs: 1e9,
      }),
    );
    const t0 = process.hrtime.bigint();
    const [r, s] = await Promise.all([rx.start(t0), tx.start(t0)]);
    expect(s.error).toBeUndefined();
    // Pacing counts 1500 bytes per datagram (the IP packet size); absolute deadlines give exactly
    // rate × duration / 1500 datagrams, ±1 batch.
    const want = rate / 8 / 1500;
    expect(Math.abs(s.sentPackets - want) / want).toBeLessThan(0.01);
    // On an idle loopback nothing is lost; a receiver starved by a loaded CI machine may drop some, and
    // then every drop before the last datagram must show up as lost (never as more than was sent).
    expect(r.packets).toBeGreaterThanOrEqual(0.99 * s.sentPackets);
    expect(r.packets + r.lost).toBeLessThanOrEqual(s.sentPackets);
    expect(r.duplicates + r.reordered).toBe(0);
    expect(r.jitterMs).toBeGreaterThanOrEqual(0);
    expect(r.bytes).toBe(r.packets * 1472);
  });

  it('both directions on one socket each (btest "both")', async () => {
    const engine = make();
    const [pa, pb] = await freePorts(2);
    const send = { payload: 1000, paceBytes: 1000, rateBps: 8e6, seqStart: 0 };
    const a = await engine.udp(base({ bindPort: pa!, peerPort: pb!, connect: true, receive: true, send }));
    const b = await engine.udp(base({ bindPort: pb!, peerPort: pa!, connect: true, receive: true, send }));
    const t0 = process.hrtime.bigint();
    const [ra, rb] = await Promise.all([a.start(t0), b.start(t0)]);
    expect(ra.sentPackets).toBeGreaterThan(900);
    for (const [rx, tx] of [
      [rb, ra],
      [ra, rb],
    ] as const) {
      // Both ends stop at the same deadline, so the last datagrams of each are still in flight when the
      // other stops receiving: on two busy cores that tail reached 14 of 1000 (3 % = 30 ms of them).
      expect(rx.packets).toBeGreaterThanOrEqual(0.97 * tx.sentPackets);
      expect(rx.packets + rx.lost).toBeLessThanOrEqual(tx.sentPackets);
    }
  });

  it('abort before or during a run ends it at once', async () => {
    const engine = make();
    const rx = await engine.udp(base({ receive: true, durationNs: 30e9 }));
    const started = rx.start();
    setTimeout(() => rx.abort(), 100);
    const out = await started;
    expect(out.rxPoints.at(-1)!.t).toBeLessThan(5e9);
  });

  it('a bind on an address this host does not have is BP_ERR_CONNECT', async () => {
    await expect(make().udp(base({ bindHost: '192.0.2.1', receive: true }))).rejects.toMatchObject({
      code: 'BP_ERR_CONNECT',
    });
  });
});
