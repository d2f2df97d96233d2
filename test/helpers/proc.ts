import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';

/**
 * Child processes for the slow tests: a long-running one that is ready once its output matches, and a
 * short one whose output is collected. Both bounded in time.
 */
export function spawnReady(
  cmd: string,
  args: string[],
  ready: RegExp,
  keep: ChildProcess[],
  timeoutMs = 20_000,
): Promise<{ proc: ChildProcess; match: RegExpExecArray }> {
  return new Promise((res, rej) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    keep.push(proc);
    let seen = '';
    const timer = setTimeout(() => rej(new Error(`not ready: ${seen}`)), timeoutMs);
    const on = (d: Buffer) => {
      seen += d.toString();
      const m = ready.exec(seen);
      if (m) {
        clearTimeout(timer);
        res({ proc, match: m });
      }
    };
    proc.stdout!.on('data', on);
    proc.stderr!.on('data', on);
    proc.once('exit', (code) => rej(new Error(`exited ${code}: ${seen}`)));
  });
}

/** Runs to the end (killed after timeoutMs); resolves with stdout when it exited 0 or printed JSON. */
export function runOutput(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0 || out.trim().startsWith('{')) res(out);
      else rej(new Error(`${cmd} ${args.join(' ')} → ${code}: ${err.slice(-500)}`));
    });
  });
}

/** A loopback port that was free a moment ago (for programs that cannot be given port 0). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
