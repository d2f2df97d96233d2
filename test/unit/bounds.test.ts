// What a hostile peer sends is bounded where it enters.
import { describe, expect, it } from 'vitest';
import { bounded, MAX_DETAIL, ProbeError } from '../../src/errors.js';
import type { RunResult } from '../../src/measure/result.js';
import { runEvent, targetState } from '../../src/mqtt/topics.js';
import { parseChunkSize } from '../../src/rmbt/lines.js';
import { csvRow } from '../../src/store/csv.js';

describe('bounds on what peers send', () => {
  it('a 2 MB error text from a server is cut to MAX_DETAIL characters with an ellipsis', () => {
    const e = new ProbeError('BP_ERR_RMBT_CONTROL', 'x'.repeat(2 * 1024 * 1024));
    expect(e.detail).toHaveLength(MAX_DETAIL);
    expect(e.detail.endsWith('…')).toBe(true);
    expect(e.message.length).toBeLessThan(MAX_DETAIL + 200);
    expect(
      ProbeError.fromJSON({ code: 'BP_ERR_PROTOCOL', message: 'y'.repeat(1e6) }).message.length,
    ).toBeLessThan(8192 + 201);
    expect(bounded('short')).toBe('short');
  });

  it('the retained MQTT state and the run event stay small whatever a server sent', () => {
    const r = {
      target: { id: 'a', kind: 'rmbt' },
      server: { host: 'h'.repeat(2e6), port: 1, name: 'n'.repeat(2e6) },
      started_at: '2026-01-01T00:00:00Z',
      finished_at: '2026-01-01T00:00:10Z',
      status: 'failed',
      engine: 'js',
      cpu: {},
      flags: [],
      error: { code: 'BP_ERR_RMBT_SERVER', message: 'e'.repeat(2e6) },
    } as unknown as RunResult;
    expect(JSON.stringify(targetState(r, 1)).length).toBeLessThan(2048);
    expect(JSON.stringify(runEvent(r, 1)).length).toBeLessThan(2048);
  });

  it('CSV cells starting with = + - @, tab or CR are neutralised; negative numbers stay numbers', () => {
    const row = csvRow({
      target: '\t=cmd',
      server: '\rfoo',
      error: '@SUM(A1)',
      upload_mbps: -1,
      download_mbps: 5,
    });
    expect(row).toContain(`'\t=cmd`);
    expect(row).toContain(`"'\rfoo"`);
    expect(row).toContain(`'@SUM(A1)`);
    expect(row).toContain(',-1,');
  });

  it('chunk sizes outside RMBT bounds (4 KiB – 4 MiB) are refused', () => {
    expect(() => parseChunkSize('CHUNKSIZE 4096 4096 67108864')).toThrow(/implausible/);
    expect(() => parseChunkSize('CHUNKSIZE 67108864')).toThrow(/implausible/);
    expect(() => parseChunkSize('CHUNKSIZE 1024 1024 4096')).toThrow(/implausible/);
    expect(parseChunkSize('CHUNKSIZE 4096 4096 4194304').max).toBe(4194304);
  });
});
