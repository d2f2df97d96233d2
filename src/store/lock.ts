import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { ProbeError } from '../errors.js';

/** The lock file of a data directory: the PID of the service that uses it. */
export const LOCK_FILE = 'service.lock';

/**
 * One service per data directory (two `serve` on one dir shared the MQTT client id and
 * flapped online/offline 31 times in 30 s). The lock is a file made with O_EXCL holding our PID. A lock
 * whose PID is gone, is our own (a container restarted with the same PID), or is not a Node process
 * running bandwidth-probe (a PID reused after a crash) is stale and taken over.
 */
export class DataDirLock {
  /** locks this process holds: a second service in the same process is refused too */
  private static readonly held = new Set<string>();
  private constructor(readonly path: string) {}

  static acquire(dataDir: string, pid = process.pid): DataDirLock {
    mkdirSync(dataDir, { recursive: true });
    const path = resolve(dataDir, LOCK_FILE);
    if (DataDirLock.held.has(path))
      throw new ProbeError('BP_ERR_LOCKED', `this process already runs a service on data_dir ${dataDir}`);
    for (let attempt = 0; attempt < 3; attempt++) {
      let fd: number;
      try {
        fd = openSync(path, 'wx', 0o644);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST')
          throw new ProbeError('BP_ERR_STORE', `cannot create the lock ${path}: ${(err as Error).message}`);
        const holder = readHolder(path);
        if (holder !== undefined && holder !== pid && isProbe(holder))
          throw new ProbeError(
            'BP_ERR_LOCKED',
            `process ${holder} holds ${path}; data_dir ${dataDir} is in use (a second service would share its MQTT client id and database)`,
          );
        // stale: take it over (another starter may race us; O_EXCL decides on the next attempt)
        try {
          unlinkSync(path);
        } catch {
          // gone already
        }
        continue;
      }
      try {
        writeSync(fd, `${pid}\n`);
      } finally {
        closeSync(fd);
      }
      DataDirLock.held.add(path);
      return new DataDirLock(path);
    }
    throw new ProbeError('BP_ERR_LOCKED', `could not take ${path}: another process keeps making it`);
  }

  release(): void {
    DataDirLock.held.delete(this.path);
    try {
      if (readHolder(this.path) === process.pid) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

function readHolder(path: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a PID is alive and looks like a bandwidth-probe service (Linux /proc; elsewhere: alive). */
function isProbe(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive but not ours to signal — still a live holder
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let cmd: string;
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return true;
  }
  return /node|bandwidth-probe/.test(cmd);
}
