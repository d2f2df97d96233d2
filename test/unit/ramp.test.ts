import { describe, expect, it } from 'vitest';
import { rampEnd } from '../../src/measure/ramp.js';

describe('unlimited UDP ramp', () => {
  it('an unlimited start: the first second is left out, the rest settled', () => {
    expect(rampEnd([240, 198, 199, 198, 197])).toEqual({ from: 1, settled: true });
  });

  it('a second that still climbs is left out too (settled within 2 s)', () => {
    expect(rampEnd([20, 150, 199, 198, 198])).toEqual({ from: 2, settled: true });
  });

  it('a peer growing ×1.5 a second from 1 Mbit/s never settles in 10 s (the old default)', () => {
    const ramp = Array.from({ length: 10 }, (_, i) => 1.5 ** i);
    const r = rampEnd(ramp);
    expect(r.settled).toBe(false);
    expect(r.from).toBe(9);
  });

  it('too short to say: fewer than two seconds after the ramp', () => {
    expect(rampEnd([200])).toEqual({ from: 0, settled: false });
    expect(rampEnd([200, 190])).toEqual({ from: 1, settled: false });
    expect(rampEnd([10, 100, 200])).toEqual({ from: 2, settled: false });
  });

  it('a dip after the ramp does not move its end', () => {
    expect(rampEnd([300, 200, 120, 200, 200])).toEqual({ from: 1, settled: true });
  });
});
