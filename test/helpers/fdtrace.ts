// Reads `strace -f` output and finds I/O on a descriptor number after it was closed and before anything
// reopened it (a stream thread using an fd that Node's thread had already closed). The
// order is the order strace saw the syscalls enter; a close counts from its completion.

/** Syscalls whose return value is a new descriptor. */
const MAKES_FD = new Set([
  'open',
  'openat',
  'socket',
  'accept',
  'accept4',
  'dup',
  'dup2',
  'dup3',
  'eventfd',
  'eventfd2',
  'epoll_create',
  'epoll_create1',
  'timerfd_create',
  'signalfd',
  'signalfd4',
  'inotify_init',
  'inotify_init1',
  'memfd_create',
  'io_uring_setup',
  'creat',
]);
/** Syscalls whose first argument is a descriptor they read, write or configure. */
const USES_FD = new Set([
  'read',
  'write',
  'readv',
  'writev',
  'recvfrom',
  'sendto',
  'recvmsg',
  'sendmsg',
  'recvmmsg',
  'sendmmsg',
  'setsockopt',
  'getsockopt',
  'shutdown',
  'ioctl',
  'pread64',
  'pwrite64',
  'fsync',
  'ftruncate',
]);

export interface FdViolation {
  pid: number;
  line: string;
  fd: number;
}

export function fdViolations(trace: string): FdViolation[] {
  const closed = new Set<number>();
  const out: FdViolation[] = [];
  const pendingClose = new Map<number, number>(); // pid -> fd of a close whose result is still to come
  const pendingMake = new Map<number, string>(); // pid -> name of an fd-making call still to return
  for (const line of trace.split('\n')) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    const body = m[2]!;
    const resumed = /^<\.\.\. (\w+) resumed>.*=\s*(-?\d+)/.exec(body);
    if (resumed) {
      const [, name, ret] = resumed;
      if (name === 'close' && pendingClose.has(pid)) {
        if (ret === '0') closed.add(pendingClose.get(pid)!);
        pendingClose.delete(pid);
      } else if (pendingMake.get(pid) === name && Number(ret) >= 0) closed.delete(Number(ret));
      pendingMake.delete(pid);
      continue;
    }
    const call = /^(\w+)\((.*)$/.exec(body);
    if (!call) continue;
    const [, name, rest] = call as unknown as [string, string, string];
    const unfinished = rest.includes('<unfinished ...>');
    const ret = /=\s*(-?\d+)/.exec(rest.slice(rest.lastIndexOf(')')))?.[1];
    const first = /^(\d+)/.exec(rest)?.[1];
    if (name === 'close' && first !== undefined) {
      if (unfinished) pendingClose.set(pid, Number(first));
      else if (ret === '0') closed.add(Number(first));
      continue;
    }
    if (MAKES_FD.has(name) || (name === 'fcntl' && /F_DUPFD/.test(rest))) {
      if (unfinished) pendingMake.set(pid, name);
      else if (ret !== undefined && Number(ret) >= 0) closed.delete(Number(ret));
      continue;
    }
    if ((name === 'pipe' || name === 'pipe2' || name === 'socketpair') && !unfinished) {
      for (const n of /\[(\d+),\s*(\d+)\]/.exec(rest)?.slice(1) ?? []) closed.delete(Number(n));
      continue;
    }
    const used: number[] = [];
    if (USES_FD.has(name) && first !== undefined) used.push(Number(first));
    if (name === 'poll' || name === 'ppoll')
      for (const p of rest.matchAll(/fd=(\d+)/g)) used.push(Number(p[1]));
    for (const fd of used) if (closed.has(fd)) out.push({ pid, line, fd });
  }
  return out;
}
