/**
 * Aborting a run must never leave a stream thread doing I/O on a descriptor number
 * that Node's thread has already closed (a number reused in that window — the SQLite file, the MQTT
 * socket — would get the thread's bytes). Each engine aborts 50 measurements against our native server,
 * alternating mid-download and mid-upload, in a child process under `strace -f`; the trace is read for
 * any recv/send/poll/setsockopt on a closed, not yet reopened number (test/helpers/fdtrace.ts), and the
 * child's open descriptors must be back to where they were. Without the fix (threads on Node's fd) the
 * same run showed 33 such uses in 10 aborts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fdViolations } from '../helpers/fdtrace.js';

const CHILD = resolve(import.meta.dirname, '../fixtures/abort-child.mjs');
const ROUNDS = 50;
// The fd-making calls (so a reused number counts as open again), close, and what a stream thread does.
const TRACED = [
  'close',
  'socket',
  'accept',
  'accept4',
  'open',
  'openat',
  'dup',
  'dup2',
  'dup3',
  'fcntl',
  'eventfd2',
  'epoll_create1',
  'pipe2',
  'socketpair',
  'timerfd_create',
  'memfd_create',
  'recvfrom',
  'sendto',
  'recvmsg',
  'sendmsg',
  'poll',
  'ppoll',
  'setsockopt',
  'shutdown',
].join(',');

describe.each(['native', 'js'])('aborting %s runs', (engine) => {
  it(`${ROUNDS} aborts mid-download and mid-upload: no I/O on a closed descriptor, fds back to start`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'bp-abortfd-'));
    try {
      const trace = join(dir, 'trace.txt');
      const r = spawnSync(
        'strace',
        [
          '-f',
          '-qq',
          '--seccomp-bpf',
          '-e',
          `trace=${TRACED}`,
          '-o',
          trace,
          process.execPath,
          CHILD,
          engine,
          `${ROUNDS}`,
        ],
        { encoding: 'utf8', timeout: 240_000 },
      );
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
        engine: string;
        before: number;
        after: number;
        statuses: string[];
      };
      expect(out.engine).toBe(engine);
      expect(out.statuses).toEqual(Array(ROUNDS).fill('aborted'));
      expect(out.after).toBeLessThanOrEqual(out.before);
      const bad = fdViolations(readFileSync(trace, 'utf8'));
      expect(bad.slice(0, 5)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
