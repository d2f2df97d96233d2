/**
 * Attacks on the real `server rmbt` process (the built CLI, native engine), each bounded in count
 * and time, with the fixed bound asserted: the process alive, RSS growth ≤ 64 MB over its start, fds back
 * to start, and a real client measuring correctly during and after the attack. Attackers connect from
 * 127.0.0.2 so the per-address caps they hit are theirs, not the real client's (127.0.0.1).
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runOutput, spawnReady } from '../helpers/proc.js';
import { tempDir } from '../helpers/rmbt.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/cli.js');
const KEY = 'hostile-test-shared-key';
const ATTACKER = '127.0.0.2';
const children: ChildProcess[] = [];

const rssMb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const fds = (pid: number) =>
  Number(
    execFileSync('sh', ['-c', `ls /proc/${pid}/fd | wc -l`])
      .toString()
      .trim(),
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Res {
  status: string;
  error?: { code: string; message: string };
  download?: { mbps: number };
  upload?: { mbps: number };
}

describe('server rmbt under attack (real process)', () => {
  let srv: ChildProcess;
  let port = 0;
  let control = 0;
  let base = 0;
  let baseFds = 0;
  const ctl = () => `http://127.0.0.1:${control}/RMBTControlServer`;

  const measure = async (): Promise<Res> =>
    JSON.parse(
      await runOutput(
        'node',
        [
          CLI,
          'measure',
          'rmbt',
          '--control-url',
          ctl(),
          '--threads',
          '2',
          '--pretest-duration',
          '0.3',
          '--ping-duration',
          '0.2',
          '--pings',
          '3',
          '--json',
          '--log-level',
          'warn',
          '--data-dir',
          tempDir(),
        ],
        60_000,
      ),
    ) as Res;

  const testRequest = async () => {
    const settings = (await (
      await fetch(`${ctl()}/settings`, {
        method: 'POST',
        body: '{}',
        headers: { 'content-type': 'application/json' },
      })
    ).json()) as { settings: { uuid: string }[] };
    const uuid = settings.settings[0]!.uuid;
    const tr = (await (
      await fetch(`${ctl()}/testRequest`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ uuid, client: 'RMBT', num_threads: 3 }),
      })
    ).json()) as { test_token: string; test_uuid: string };
    return tr;
  };

  beforeAll(async () => {
    port = await freePort();
    control = await freePort();
    const http = await freePort();
    srv = (
      await spawnReady(
        'node',
        [
          CLI,
          'server',
          'rmbt',
          '--bind',
          '127.0.0.1',
          '--port',
          String(http),
          '--tls-port',
          '0',
          '--plain-port',
          String(port),
          '--control-port',
          String(control),
          '--secret-key',
          KEY,
          '--test-duration',
          '2',
          '--engine',
          'native',
          '--data-dir',
          tempDir(),
          '--log-level',
          'warn',
        ],
        /plain RMBT on/,
        children,
      )
    ).proc;
    // One real run first, so the baseline counts what any served run allocates once (the shared chunk
    // sets, the engine's threads' stacks, JIT code).
    expect((await measure()).status).toBe('ok');
    await sleep(500);
    base = rssMb(srv.pid!);
    baseFds = fds(srv.pid!);
  }, 90_000);

  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  const bounded = async (what: string, limitMb = 64) => {
    await sleep(1500);
    const grew = rssMb(srv.pid!) - base;
    console.log(
      `${what}: RSS ${base.toFixed(0)} → ${(base + grew).toFixed(0)} MB, fds ${baseFds} → ${fds(srv.pid!)}`,
    );
    expect(srv.exitCode).toBeNull();
    expect(grew).toBeLessThan(limitMb);
  };

  it('result flood: 60 × testRequest + a 4 MB result, then 60 × a 0.9 MB one: 413 / bounded store, RSS bounded', async () => {
    // A result for a fresh test with `pad` bytes of padding: the HTTP status, or 'closed' when the server
    // answered 413 from the Content-Length and closed before the upload finished.
    const postResult = async (pad: string): Promise<number | string> => {
      const tr = await testRequest();
      return fetch(`${ctl()}/result`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ test_uuid: tr.test_uuid, test_token: tr.test_token, pad }),
      }).then(
        async (r) => {
          await r.arrayBuffer();
          return r.status;
        },
        () => 'closed',
      );
    };
    const big = 'x'.repeat(4 * 1024 * 1024);
    const codes: (number | string)[] = [];
    for (let i = 0; i < 60; i++) codes.push(await postResult(big));
    expect(codes.filter((c) => c !== 413 && c !== 'closed')).toEqual([]);
    expect(codes).toContain(413);
    const fits = 'y'.repeat(900 * 1024);
    for (let i = 0; i < 60; i++) expect(await postResult(fits)).toBe(200);
    await bounded('results');
    expect((await measure()).status).toBe('ok');
  }, 120_000);

  it('unread data: 64 connections with one token and 64 with tokens of their own, GETCHUNKS 300000 4194304, never reading', async () => {
    const tr = await testRequest();
    const { makeToken } = await import('../../src/rmbt/token.js');
    // this attack's own growth: the result flood before it may leave the control server's bounded result store
    // (up to 16 MiB of bodies, by design) in the process, which is not this attack's memory
    const before = rssMb(srv.pid!);
    const socks: net.Socket[] = [];
    const answers: string[] = [];
    const attack = (token: string) =>
      new Promise<void>((res) => {
        const s = net.connect({ port, host: '127.0.0.1', localAddress: ATTACKER });
        socks.push(s);
        let buf = '';
        const onData = (d: Buffer) => {
          buf += d.toString('latin1');
          if (buf.includes('ACCEPT TOKEN') && !buf.includes('TOKEN sent')) {
            s.write(`TOKEN ${token}\n`);
            buf += 'TOKEN sent';
          }
          const m = /TOKEN sent(OK|ERR[^\n]*)/.exec(buf);
          if (m) {
            answers.push(m[1]!);
            if (m[1] === 'OK') s.write('GETCHUNKS 300000 4194304\n');
            s.off('data', onData);
            s.pause(); // never read again
            res();
          }
        };
        s.on('data', onData);
        s.on('error', () => res());
      });
    for (let i = 0; i < 64; i++) await attack(tr.test_token);
    for (let i = 0; i < 64; i++) await attack(makeToken(KEY));
    // One token: its grant (3) + 1; own tokens: up to the per-address cap (32) in all.
    expect(answers.filter((a) => a === 'OK').length).toBe(32);
    expect(answers.filter((a) => a.startsWith('ERR BUSY')).length).toBe(128 - 32);
    await sleep(2000);
    const during = rssMb(srv.pid!) - before;
    console.log(`never-reading GETCHUNKS: RSS +${during.toFixed(0)} MB while held`);
    expect(during).toBeLessThan(64);
    // A real client (another address) measures meanwhile.
    const r = await measure();
    expect(r.status).toBe('ok');
    for (const s of socks) s.destroy();
    // What this attack leaves: the attack's connections are gone; what stays is what the allocator keeps
    // of the real run's threads (the leak test checks that runs do not leak). Measured against this attack's own
    // start: the result flood's bounded store (about 35 MB in CI) is not this attack's. CI saw +17 and +35 MB.
    await sleep(1500);
    const after = rssMb(srv.pid!) - before;
    console.log(`after GETCHUNKS attack: RSS +${after.toFixed(0)} MB over this attack's start`);
    expect(after).toBeLessThan(64);
    // and everything since the server started, as the leak test bounds it
    await bounded('after GETCHUNKS attack', 96);
  }, 120_000);

  it('real runs leak nothing: after 6 warm-up runs, two rounds of 6 do not both grow RSS; fds back', async () => {
    // The warm-up fills what the allocator keeps after the attack rows (glibc arenas of the loop
    // threads; each run also has a latency probe connection and a fresh connect a second since):
    // retained, not leaked. A leak grows with every run, so in both rounds alike; what the allocator
    // retains levels off. One CI run saw +18 MB over 12 runs after the warm-up where others saw ±1 MB:
    // one arena filling late, in one round. A leak of 1.5 MB a run (9 MB a round) fails either way.
    for (let i = 0; i < 6; i++) expect((await measure()).status).toBe('ok');
    await sleep(1500);
    const rounds = [rssMb(srv.pid!)];
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 6; i++) expect((await measure()).status).toBe('ok');
      await sleep(1500);
      rounds.push(rssMb(srv.pid!));
    }
    const [warm, mid, end] = rounds as [number, number, number];
    console.log(
      `2 × 6 runs after the warm-up: RSS ${warm.toFixed(0)} → ${mid.toFixed(0)} → ${end.toFixed(0)} MB`,
    );
    // (here: 169 → 198 → 193, a late arena in the first round; the old "12 runs < 16 MB" read +24)
    expect(Math.min(mid - warm, end - mid)).toBeLessThan(8);
    await bounded('after 18 runs', 96);
    const t0 = Date.now();
    while (fds(srv.pid!) > baseFds && Date.now() - t0 < 5000) await sleep(200);
    expect(fds(srv.pid!)).toBeLessThanOrEqual(baseFds);
  }, 300_000);
});
