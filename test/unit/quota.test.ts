import { describe, expect, it } from 'vitest';
import { type InboundReport, inboundHeadline, inboundResult } from '../../src/measure/inbound.js';
import { MAX_ADDRESSES, Quota } from '../../src/net/quota.js';

const H = 3_600_000;

describe('daily quotas', () => {
  it('no limit set: inactive, nothing refused, nothing tracked', () => {
    const q = new Quota({ dailyBytesPerAddress: 0, dailySessionsPerAddress: 0, dailyBytes: 0 });
    expect(q.active).toBe(false);
    q.begin('10.0.0.1');
    q.add('10.0.0.1', 1e12);
    expect(q.check('10.0.0.1')).toBeUndefined();
    expect(q.remaining('10.0.0.1')).toBe(Number.POSITIVE_INFINITY);
  });

  it('tests per address: the next one past the limit is refused, others are not; the window rolls', () => {
    let now = 100 * H;
    const q = new Quota({ dailyBytesPerAddress: 0, dailySessionsPerAddress: 2, dailyBytes: 0 }, () => now);
    q.begin('10.0.0.1');
    expect(q.check('10.0.0.1')).toBeUndefined();
    now += 5 * H;
    q.begin('10.0.0.1');
    expect(q.check('10.0.0.1')).toMatchObject({ reason: 'sessions_per_address' });
    expect(q.check('10.0.0.1')!.message).toBe(
      '10.0.0.1 has begun 2 tests in the last 24 hours (the limit is 2)',
    );
    expect(q.check('10.0.0.2')).toBeUndefined();
    // 24 h after the first test it leaves the window: one slot again, not two
    now = 124 * H + 1;
    expect(q.check('10.0.0.1')).toBeUndefined();
    q.begin('10.0.0.1');
    expect(q.check('10.0.0.1')).toBeDefined();
    now = 129 * H + 1;
    expect(q.check('10.0.0.1')).toBeUndefined();
  });

  it('bytes per address and in all: remaining counts down, a spent budget refuses', () => {
    let now = 10 * H;
    const q = new Quota(
      { dailyBytesPerAddress: 1000, dailySessionsPerAddress: 0, dailyBytes: 1500 },
      () => now,
    );
    q.add('a', 600);
    expect(q.remaining('a')).toBe(400);
    expect(q.remaining('b')).toBe(900); // the total's 1500 − 600 is the tighter one for b
    q.add('b', 800);
    expect(q.remaining('b')).toBe(100);
    // a budget with bytes left still lets a test begin (the running test is cut when it runs out)
    expect(q.check('b')).toBeUndefined();
    q.add('c', 100);
    expect(q.check('b')).toMatchObject({ reason: 'bytes_total' });
    expect(q.check('d')!.message).toBe(
      'the server has moved 1500 bytes in the last 24 hours (the limit is 1500)',
    );
    q.add('a', 500);
    // a's own budget (1100 of 1000) is named before the total's
    expect(q.check('a')).toMatchObject({ reason: 'bytes_per_address' });
    expect(q.remaining('a')).toBe(0);
    now += 25 * H;
    expect(q.check('a')).toBeUndefined();
    expect(q.remaining('a')).toBe(1000);
  });

  it('seeded from the history: a restart keeps what the last 24 h used, older tests do not count', () => {
    const now = 1000 * H;
    const q = new Quota({ dailyBytesPerAddress: 0, dailySessionsPerAddress: 2, dailyBytes: 5000 }, () => now);
    q.seed([
      { address: 'r', at: now - 2 * H, bytes: 2000 },
      { address: 'r', at: now - 30 * H, bytes: 9999 },
      { address: 'r', at: now - 1 * H, bytes: 2000 },
    ]);
    expect(q.check('r')).toMatchObject({ reason: 'sessions_per_address' });
    expect(q.remaining('x')).toBe(1000);
  });

  it('memory is bounded: past MAX_ADDRESSES the least recently seen address is forgotten', () => {
    const q = new Quota({ dailyBytesPerAddress: 0, dailySessionsPerAddress: 1, dailyBytes: 0 });
    q.begin('first');
    for (let i = 0; i < MAX_ADDRESSES; i++) q.begin(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    expect(q.check('first')).toBeUndefined();
    expect(q.check('10.0.0.5')).toBeDefined();
  });
});

describe('inbound runs from a server report', () => {
  const base = (over: Partial<InboundReport>): InboundReport => ({
    kind: 'btest-server',
    started_at: new Date('2026-12-04T10:00:00Z'),
    finished_at: new Date('2026-12-04T10:00:02Z'),
    engine: 'native',
    info: {
      peer: '2001:db8::7',
      peer_port: 40000,
      local_port: 2000,
      user: 'btest',
      protocol: 'udp',
      direction: 'send',
      connections: 1,
      bytes_sent: 0,
      bytes_received: 2_500_000,
      duration_ms: 2000,
      lost_packets: 10,
      end: 'done',
    },
    ...over,
  });
  const line = (bps: number, s: number) =>
    Array.from({ length: s * 4 + 1 }, (_, i) => ({ t: i * 250e6, b: (bps / 8) * (i / 4) }));

  it("the peer's upload with its loss, as the peer would report its own test", () => {
    const r = inboundResult(
      base({ upload: { streams: [line(10e6, 2)], totals: [2_500_000] }, udp: { packets: 990, lost: 10 } }),
    );
    expect(r.status).toBe('ok');
    expect(r.target).toEqual({ id: 'inbound', kind: 'btest-server' });
    expect(r.server).toEqual({ host: '2001:db8::7', port: 40000 });
    expect(r.upload!.mbps).toBe(10);
    expect(r.upload!.series).toEqual([
      { t_ms: 1000, mbps: 10 },
      { t_ms: 2000, mbps: 10 },
    ]);
    expect(r.upload!.udp!.loss_percent).toBe(1);
    expect(r.download).toBeUndefined();
    expect(inboundHeadline(r)).toEqual({ peer: '[2001:db8::7]', lost_packets: 10 });
  });

  it('a peer that vanished before moving anything is a failed run; one ended by a quota is not', () => {
    const gone = inboundResult(
      base({ error: { code: 'BP_ERR_PEER_CLOSED', message: 'the peer closed the connection' } }),
    );
    expect(gone.status).toBe('failed');
    expect(gone.error!.code).toBe('BP_ERR_PEER_CLOSED');
    const cut = inboundResult(
      base({
        info: { ...base({}).info, end: 'quota' },
        download: { streams: [line(80e6, 1)], totals: [10_000_000] },
        error: { code: 'BP_ERR_QUOTA', message: 'daily quota' },
      }),
    );
    expect(cut.status).toBe('ok');
    expect(cut.download!.mbps).toBe(80);
    expect(cut.inbound!.end).toBe('quota');
  });
});
