import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataDirLock, LOCK_FILE } from '../../src/store/lock.js';
import { tempDir } from '../helpers/rmbt.js';

describe('data dir lock', () => {
  it('holds the PID; a second service in this process is refused; release removes it', () => {
    const dir = tempDir();
    const a = DataDirLock.acquire(dir);
    expect(readFileSync(join(dir, LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    expect(() => DataDirLock.acquire(dir)).toThrow(/BP_ERR_LOCKED|already runs a service/);
    a.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    DataDirLock.acquire(dir).release();
  });

  it('a stale lock (a dead PID, garbage, our own PID from a restarted container) is taken over', () => {
    for (const content of ['2147483646\n', 'garbage', '', `${process.pid}\n`]) {
      const dir = tempDir();
      writeFileSync(join(dir, LOCK_FILE), content);
      const l = DataDirLock.acquire(dir);
      expect(readFileSync(join(dir, LOCK_FILE), 'utf8').trim(), content).toBe(String(process.pid));
      l.release();
    }
  });

  it('a live service in another process keeps it', () => {
    const dir = tempDir();
    // the parent of this worker is a live node process: it stands in for the other service
    writeFileSync(join(dir, LOCK_FILE), `${process.ppid}\n`);
    let err: unknown;
    try {
      DataDirLock.acquire(dir);
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('BP_ERR_LOCKED');
    expect(readFileSync(join(dir, LOCK_FILE), 'utf8').trim()).toBe(String(process.ppid));
  });
});
