import { expect, it } from 'vitest';
import { fdViolations } from '../helpers/fdtrace.js';

// The checker the abort test relies on (test/slow/abortfd.test.ts), on hand-made strace lines.
it('finds I/O on a closed descriptor, across threads and unfinished calls, and forgives a reopened one', () => {
  const trace = [
    '100  socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 20',
    '101  recvfrom(20, "x", 1, 0, NULL, NULL) = 1',
    '100  close(20)                         = 0',
    '101  recvfrom(20, 0x1, 1048576, MSG_TRUNC|MSG_DONTWAIT, NULL, NULL) = -1 EBADF (Bad file descriptor)',
    '101  poll([{fd=20, events=POLLIN}, {fd=9, events=POLLIN}], 2, 100 <unfinished ...>',
    '100  openat(AT_FDCWD, "/data/store.db", O_RDWR) = 20',
    '101  sendto(20, "y", 1, 0, NULL, 0) = 1',
    '100  close(21 <unfinished ...>',
    '102  sendto(21, "z", 1, 0, NULL, 0) = 1',
    '100  <... close resumed>)              = 0',
    '102  setsockopt(21, SOL_SOCKET, SO_RCVLOWAT, [1], 4) = -1 EBADF (Bad file descriptor)',
    '100  fcntl(22, F_DUPFD_CLOEXEC, 0)     = 21',
    '102  sendto(21, "z", 1, 0, NULL, 0) = 1',
  ].join('\n');
  const v = fdViolations(trace);
  expect(v.map((x) => [x.pid, x.fd])).toEqual([
    [101, 20],
    [101, 20],
    [102, 21],
  ]);
});
