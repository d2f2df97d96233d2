import { describe, expect, it } from 'vitest';
import { ProbeError } from '../../src/errors.js';
import { parseChunkSize, parseCommand, parseGreeting, parseTime } from '../../src/rmbt/lines.js';

describe('RMBT lines (specs/rmbt.md §3)', () => {
  it('greeting', () => {
    expect(parseGreeting('RMBTv1.3.5')).toBe('1.3.5');
    expect(parseGreeting('RMBTv0.3')).toBe('0.3');
    expect(() => parseGreeting('HTTP/1.1 200 OK')).toThrow(ProbeError);
  });

  it('CHUNKSIZE with three values and the v0.3 single value', () => {
    expect(parseChunkSize('CHUNKSIZE 4096 4096 4194304')).toEqual({
      def: 4096,
      min: 4096,
      max: 4194304,
      dynamic: true,
    });
    expect(parseChunkSize('CHUNKSIZE 4096')).toEqual({ def: 4096, min: 4096, max: 4096, dynamic: false });
    expect(() => parseChunkSize('CHUNKSIZE 0 0 0')).toThrow(/implausible/);
    expect(() => parseChunkSize('CHUNKSIZE 8192 4096 4096')).toThrow(/implausible/);
    expect(() => parseChunkSize('OK')).toThrow(/expected CHUNKSIZE/);
  });

  it('TIME: two words are final, four are intermediate (§3.2)', () => {
    expect(parseTime('TIME 100377500')).toEqual({ ns: 100377500 });
    expect(parseTime('TIME 100349789 BYTES 4096')).toEqual({ ns: 100349789, bytes: 4096 });
    expect(() => parseTime('ERR')).toThrow(expect.objectContaining({ code: 'BP_ERR_RMBT_SERVER' }));
    expect(() => parseTime('TIME -1')).toThrow(expect.objectContaining({ code: 'BP_ERR_PROTOCOL' }));
    expect(() => parseTime(`TIME ${'9'.repeat(30)}`)).toThrow(ProbeError);
  });

  it('commands as the server reads them', () => {
    expect(parseCommand('GETTIME 7 4017152')).toEqual({ cmd: 'GETTIME', seconds: 7, chunkSize: 4017152 });
    expect(parseCommand('GETCHUNKS 8')).toEqual({ cmd: 'GETCHUNKS', count: 8 });
    expect(parseCommand('PUT')).toEqual({ cmd: 'PUT' });
    expect(parseCommand('PUTNORESULT 65536')).toEqual({ cmd: 'PUTNORESULT', chunkSize: 65536 });
    expect(parseCommand('PING')).toEqual({ cmd: 'PING' });
    expect(parseCommand('TOKEN abc')).toEqual({ cmd: 'TOKEN', token: 'abc' });
    expect(parseCommand('GETTIME x')).toMatchObject({ cmd: 'UNKNOWN' });
    expect(parseCommand('PUT 12x')).toMatchObject({ cmd: 'UNKNOWN' });
    expect(parseCommand('FOO')).toMatchObject({ cmd: 'UNKNOWN' });
    expect(parseCommand('')).toMatchObject({ cmd: 'UNKNOWN' });
  });
});
