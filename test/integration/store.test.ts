import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { RunResult } from '../../src/measure/result.js';
import { DB_FILE, Store } from '../../src/store/store.js';
import { tempDir } from '../helpers/rmbt.js';

function run(target: string, second: number, over: Partial<RunResult> = {}): RunResult {
  return {
    target: { id: target, kind: 'rmbt' },
    server: { host: 'h', port: 1 },
    started_at: new Date(Date.UTC(2026, 10, 20, 0, 0, second)).toISOString(),
    finished_at: new Date(Date.UTC(2026, 10, 20, 0, 0, second + 9)).toISOString(),
    status: 'ok',
    engine: 'native',
    cpu: {},
    flags: [],
    ...over,
  };
}

describe('store (SQLite, WAL)', () => {
  it('stores results whole and queries them newest first, by target and time', () => {
    const s = Store.open(tempDir());
    const dl = {
      mbps: 93.5,
      bytes: 1,
      bytes_total: 1,
      duration_ms: 7000,
      streams: 3,
      timing: 'client' as const,
      series: [{ t_ms: 250, mbps: 90 }],
      per_stream: [],
    };
    const a = s.insert(run('a', 1, { download: dl }));
    s.insert(run('b', 2));
    s.insert(run('a', 3, { status: 'failed', error: { code: 'BP_ERR_CONNECT', message: 'm' } }));
    expect(s.get(a)!.result.download!.series).toEqual([{ t_ms: 250, mbps: 90 }]);
    expect(s.list().map((r) => r.result.started_at.slice(17, 19))).toEqual(['03', '02', '01']);
    expect(s.list({ target: 'a' }).map((r) => r.result.status)).toEqual(['failed', 'ok']);
    expect(s.list({ since: run('x', 2).started_at }).length).toBe(2);
    expect(s.list({ limit: 1 }).length).toBe(1);
    expect(
      s
        .latest()
        .map((r) => [r.result.target.id, r.result.status])
        .sort(),
    ).toEqual([
      ['a', 'failed'],
      ['b', 'ok'],
    ]);
    expect(s.counts()).toEqual({ ok: 2, failed: 1, aborted: 0, skipped: 0 });
    s.close();
  });

  it('keeps unpublished runs in order until marked, across a reopen', () => {
    const dir = tempDir();
    const s = Store.open(dir);
    const ids = [1, 2, 3].map((i) => s.insert(run('a', i)));
    s.markPublished(ids[0]!);
    s.close();
    const again = Store.open(dir);
    expect(again.unpublished().map((r) => r.id)).toEqual([ids[1], ids[2]]);
    again.close();
  });

  it('prunes by age', () => {
    const s = Store.open(tempDir());
    s.insert(run('a', 0));
    s.insert(run('a', 50));
    const now = Date.UTC(2026, 10, 20, 0, 0, 30) + 86_400_000;
    expect(s.prune(1, now)).toBe(1);
    expect(s.list().length).toBe(1);
    s.close();
  });

  it('migrates once, and refuses a database from a newer version', () => {
    const dir = tempDir();
    Store.open(dir).close();
    Store.open(dir).close();
    const db = new Database(join(dir, DB_FILE));
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.pragma('user_version = 99');
    db.close();
    expect(() => Store.open(dir)).toThrow(expect.objectContaining({ code: 'BP_ERR_STORE' }));
  });

  it('a full store fails the write with BP_ERR_STORE and keeps what it had', () => {
    const dir = tempDir();
    const s = Store.open(dir, undefined, { maxPages: 12 });
    const big = 'x'.repeat(20_000);
    let stored = 0;
    let error: unknown;
    for (let i = 0; i < 50 && !error; i++) {
      try {
        s.insert(run('a', i, { server: { host: big, port: 1 } }));
        stored++;
      } catch (err) {
        error = err;
      }
    }
    expect(error).toMatchObject({ code: 'BP_ERR_STORE' });
    expect((error as Error).message).toContain('the disk is full');
    expect(stored).toBeGreaterThan(0);
    expect(s.list({ limit: 1000 }).length).toBe(stored);
    expect(s.integrity()).toBe('ok');
    s.close();
  });

  it('kill -9 in the middle of a write loses only that write; the database opens clean', async () => {
    const dir = tempDir();
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, '../fixtures/store-child.mjs'), dir, '40'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`child exited early (${code})`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const s = Store.open(dir);
    expect(s.integrity()).toBe('ok');
    expect(s.list({ limit: 1000 }).length).toBe(40);
    expect(s.insert(run('a', 99))).toBeGreaterThan(0);
    s.close();
  });

  describe('a damaged history', () => {
    const fill = (dir: string, n: number) => {
      const s = Store.open(dir);
      for (let i = 0; i < n; i++) s.insert(run('a', i, { server: { host: 'h'.repeat(2000), port: 1 } }));
      s._dbForCrashTest().pragma('wal_checkpoint(TRUNCATE)');
      return s;
    };
    const smash = (dir: string) => {
      const fd = openSync(join(dir, DB_FILE), 'r+');
      const junk = Buffer.alloc(4096 * 20, 0x5a);
      writeSync(fd, junk, 0, junk.length, 4096 * 10);
      closeSync(fd);
    };
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

    it('one damaged row: lists go on without it, its detail is a coded error, health says so', () => {
      const dir = tempDir();
      fill(dir, 5).close();
      const raw = new Database(join(dir, DB_FILE));
      raw.prepare("UPDATE runs SET result = '{not json' WHERE id = 3").run();
      raw.close();
      const s = Store.open(dir);
      expect(s.health()).toBeUndefined();
      expect(s.summaries({ limit: 10 }).map((r) => r.id)).toEqual([5, 4, 3, 2, 1]);
      expect(s.list({ limit: 10 }).map((r) => r.id)).toEqual([5, 4, 2, 1]);
      expect(() => s.get(3)).toThrow(/BP_ERR_STORE_CORRUPT|damaged/);
      expect(s.health()?.code).toBe('BP_ERR_STORE_CORRUPT');
      // the damaged row cannot block the MQTT queue
      expect(s.unpublished(10).map((r) => r.id)).toEqual([1, 2, 4, 5]);
      expect(s.unpublished(10).map((r) => r.id)).toEqual([1, 2, 4, 5]);
      s.close();
    });

    it('a damaged page found by a query: a coded error, and health says so', () => {
      const dir = tempDir();
      const s = fill(dir, 300);
      smash(dir);
      s._dbForCrashTest().pragma('shrink_memory'); // drop the page cache: the next read goes to the file
      expect(() => s.summaries({ limit: 1000 })).toThrow(/BP_ERR_STORE_CORRUPT|malformed/);
      expect(s.health()).toMatchObject({ code: 'BP_ERR_STORE_CORRUPT' });
      s.close();
    });

    it('found at open: left untouched and runs kept in memory; with reset_corrupt_db kept aside and fresh', () => {
      const dir = tempDir();
      fill(dir, 300).close();
      smash(dir);
      const before = sha(join(dir, DB_FILE));
      const mem = Store.open(dir);
      expect(mem.health()?.message).toMatch(/is damaged .*left untouched.*kept in memory/);
      expect(mem.summaries()).toEqual([]);
      const id = mem.insert(run('a', 1)); // the service goes on
      expect(mem.get(id)?.result.target.id).toBe('a');
      mem.close();
      expect(sha(join(dir, DB_FILE))).toBe(before); // nothing overwritten
      const fresh = Store.open(dir, undefined, { resetCorrupt: true });
      expect(fresh.health()?.message).toMatch(/kept as .*\.corrupt-/);
      expect(fresh.summaries()).toEqual([]);
      fresh.insert(run('a', 2));
      fresh.close();
      const aside = readdirSync(dir).filter((f) => f.startsWith(`${DB_FILE}.corrupt-`));
      expect(aside).toHaveLength(1);
      expect(sha(join(dir, aside[0]!))).toBe(before);
      // the next start finds a healthy file and says nothing
      const again = Store.open(dir);
      expect(again.health()).toBeUndefined();
      expect(again.summaries()).toHaveLength(1);
      again.close();
    });

    it('a file that is no database at all is treated the same way', () => {
      const dir = tempDir();
      writeFileSync(join(dir, DB_FILE), Buffer.alloc(8192, 0x41));
      const s = Store.open(dir);
      expect(s.health()?.code).toBe('BP_ERR_STORE_CORRUPT');
      s.close();
      expect(readFileSync(join(dir, DB_FILE))).toEqual(Buffer.alloc(8192, 0x41));
    });
  });
});
