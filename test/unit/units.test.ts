import { describe, expect, it } from 'vitest';
import { summaryText } from '../../src/cli/summary.js';
import { startResult } from '../../src/measure/result.js';
import { msText, rateText } from '../../src/measure/units.js';

describe('figures as people read them', () => {
  it('rates: three significant figures, Gbit/s from 1000 Mbit/s', () => {
    expect(rateText(21_834.2)).toBe('21.8 Gbit/s');
    expect(rateText(1000)).toBe('1.00 Gbit/s');
    expect(rateText(942.36)).toBe('942 Mbit/s');
    expect(rateText(94.236)).toBe('94.2 Mbit/s');
    expect(rateText(9.4236)).toBe('9.42 Mbit/s');
    expect(rateText(0.004)).toBe('< 0.01 Mbit/s');
    expect(rateText(null)).toBe('–');
  });

  it('times: sub-millisecond pings keep two significant figures, never "0.0"', () => {
    expect(msText(0.0362)).toBe('0.036');
    expect(msText(0.41)).toBe('0.41');
    expect(msText(12.34)).toBe('12.3');
    expect(msText(250.4)).toBe('250');
    expect(msText(0.0004)).toBe('< 0.001');
  });

  it('the CLI summary: Gbit/s, the flags, and no "Server :0" for a run that reached no server', () => {
    const r = startResult({ id: 'x', kind: 'rmbt' }, { host: '', port: 0 }, 'js', new Date());
    r.status = 'failed';
    r.error = { code: 'BP_ERR_CONNECT', message: 'refused' };
    expect(summaryText(r)).not.toMatch(/Server/);
    const ok = startResult(
      { id: 'x', kind: 'rmbt' },
      { host: '127.0.0.1', port: 8081, transport: 'http' },
      'native',
      new Date(),
    );
    ok.download = {
      mbps: 21_834,
      bytes: 8e9,
      bytes_total: 8e9,
      duration_ms: 3000,
      streams: 3,
      timing: 'client',
      series: [],
      per_stream: [],
    };
    ok.flags.push('cpu_limited');
    const text = summaryText(ok);
    expect(text).toContain('Server    127.0.0.1:8081 (http)');
    expect(text).toContain('Download  21.8 Gbit/s (3 streams');
    expect(text).toContain('flags: cpu_limited');
  });
});
