import { chownSync, lchownSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ProbeError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * Started as root (the add-on: s6-overlay's /init needs it), the service gives up root before it opens
 * anything: data_dir and what is in it is handed to `run_as`, then the process's
 * groups, gid and uid change for good. Node has no getpwnam: the user is looked up in /etc/passwd.
 */
export interface Account {
  uid: number;
  gid: number;
  name: string;
}

export function lookupAccount(spec: string, passwd = '/etc/passwd'): Account {
  const numeric = /^(\d+)(?::(\d+))?$/.exec(spec);
  if (numeric) {
    const uid = Number(numeric[1]);
    return { uid, gid: numeric[2] !== undefined ? Number(numeric[2]) : uid, name: spec };
  }
  let text = '';
  try {
    text = readFileSync(passwd, 'utf8');
  } catch (err) {
    throw new ProbeError('BP_ERR_CONFIG', `run_as ${spec}: cannot read ${passwd}: ${(err as Error).message}`);
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === spec && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]), name: spec };
  }
  throw new ProbeError('BP_ERR_CONFIG', `run_as ${spec}: no such user in ${passwd}`);
}

/**
 * Drops root for `runAs`, first giving it data_dir and its entries (except `keep`, e.g. the add-on's
 * options.json, which the Supervisor owns). No-op unless root and `runAs` is set. Returns the account.
 */
export function dropPrivileges(
  runAs: string | undefined,
  dataDir: string,
  keep: readonly string[],
  log?: Logger,
): Account | undefined {
  if (!runAs || typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const acct = lookupAccount(runAs);
  if (acct.uid === 0) return undefined;
  const dir = resolve(dataDir);
  const kept = new Set(keep.map((k) => resolve(k)));
  try {
    mkdirSync(dir, { recursive: true });
    chownSync(dir, acct.uid, acct.gid);
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (kept.has(p)) continue;
        // lchown: a symlink in data_dir must not hand its target to the user
        lchownSync(p, acct.uid, acct.gid);
        if (e.isDirectory()) walk(p);
      }
    };
    walk(dir);
    process.setgroups?.([acct.gid]);
    process.setgid!(acct.gid);
    process.setuid!(acct.uid);
  } catch (err) {
    const m = (err as Error).message;
    // Node (CVE-2024-22017) refuses to change ids while libuv may use io_uring (Debian trixie's Node
    // even with UV_USE_IO_URING=0): start the process as the user instead (setpriv, as the image does)
    const hint = /io_uring/.test(m)
      ? '; this Node refuses to change ids: start it as that user instead (e.g. setpriv --reuid)'
      : '';
    throw new ProbeError('BP_ERR_CONFIG', `cannot run as ${runAs} (uid ${acct.uid}): ${m}${hint}`);
  }
  log?.info({ user: acct.name, uid: acct.uid, gid: acct.gid, data_dir: dir }, 'running without root');
  return acct;
}
