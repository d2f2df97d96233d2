/**
 * Our servers under abuse: in a network namespace this test makes (root), with its loopback
 * shaped by tbf so throughput is set by the link and not by how busy the two cores are, our RMBT and
 * btest servers run as real processes (the built CLI). A real client measures once alone, then again
 * while 200 connections from five other addresses that send nothing, garbage or half a handshake are
 * kept open against the servers (each closed one replaced at once), and once more alone after the abuse. The result
 * under abuse must be within 5 % of an undisturbed one (before or after: the machine's own speed drifts), the
 * servers' memory must stay bounded, and every abusive connection must be closed by the servers'
 * handshake deadline.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shapedNamespace } from '../helpers/netns.js';
import { runOutput, spawnReady } from '../helpers/proc.js';
import { tempDir } from '../helpers/rmbt.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/cli.js');
const ABUSER = join(ROOT, 'test/helpers/abuser.mjs');
const NS = `bpab${process.pid % 100000}`;
const KEY = 'abuse-test-shared-key';
const PORTS = { rmbtPlain: 5301, rmbtHttp: 5302, btest: 2000 };
const HANDSHAKE_S = 3;
// Low enough that a busy CI VM still fills the link (CI once read 265 Mbit/s undisturbed at 300).
const RATE_MBIT = 200;

const children: ChildProcess[] = [];

const daemon = async (args: string[], ready: RegExp): Promise<ChildProcess> =>
  (await spawnReady('ip', ['netns', 'exec', NS, 'node', CLI, ...args], ready, children)).proc;

const runInNs = (cmd: string[], timeoutMs: number) =>
  runOutput('ip', ['netns', 'exec', NS, ...cmd], timeoutMs);

interface Res {
  status: string;
  error?: { code: string; message: string };
  download?: { mbps: number };
  upload?: { mbps: number };
}

const rmbt = async (): Promise<Res> =>
  JSON.parse(
    await runInNs(
      [
        'node',
        CLI,
        'measure',
        'rmbt',
        '--server',
        `127.0.0.1:${PORTS.rmbtPlain}`,
        '--key',
        KEY,
        '--transport',
        'plain',
        '--threads',
        '2',
        '--duration',
        '3',
        '--pretest-duration',
        '0.5',
        '--ping-duration',
        '0.2',
        '--pings',
        '5',
        '--json',
        '--log-level',
        'warn',
        '--data-dir',
        tempDir(),
      ],
      40_000,
    ),
  ) as Res;

// One direction at a time: on a shaped loopback both directions share one queue, so with `both` the
// split between them wanders from run to run even when the sum does not.
const btest = async (direction: 'receive' | 'send'): Promise<Res> =>
  JSON.parse(
    await runInNs(
      [
        'node',
        CLI,
        'measure',
        'btest',
        '--host',
        `127.0.0.1:${PORTS.btest}`,
        '--user',
        'btest',
        '--password',
        'abuse-pw',
        '--protocol',
        'tcp',
        '--direction',
        direction,
        '--duration',
        '3',
        '--json',
        '--log-level',
        'warn',
        '--data-dir',
        tempDir(),
      ],
      40_000,
    ),
  ) as Res;

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? Number.NaN);
}

function fds(pid: number): number {
  return Number(
    execFileSync('sh', ['-c', `ls /proc/${pid}/fd | wc -l`])
      .toString()
      .trim(),
  );
}

const within = (a: number, b: number, pct: number) => Math.abs(a - b) / b <= pct / 100;

describe('servers under abuse: 200 idle, garbage and half-open connections while a real client measures', () => {
  let ns: ReturnType<typeof shapedNamespace> | undefined;
  let rmbtServer: ChildProcess;
  let btestServer: ChildProcess;

  beforeAll(async () => {
    // Shaped loopback: the link, not the CPU, sets the speed, so two runs compare to a few percent.
    ns = shapedNamespace(NS, RATE_MBIT);
    rmbtServer = await daemon(
      [
        'server',
        'rmbt',
        '--bind',
        '127.0.0.1',
        '--plain-port',
        String(PORTS.rmbtPlain),
        '--port',
        String(PORTS.rmbtHttp),
        '--tls-port',
        '0',
        '--control-port',
        '0',
        '--secret-key',
        KEY,
        '--data-dir',
        tempDir(),
        '--engine',
        'native',
        '--handshake-timeout',
        String(HANDSHAKE_S),
        '--log-level',
        'warn',
      ],
      /plain RMBT on/,
    );
    btestServer = await daemon(
      [
        'server',
        'btest',
        '--bind',
        '127.0.0.1',
        '--port',
        String(PORTS.btest),
        '--auth',
        'md5',
        '--user',
        'btest',
        '--password',
        'abuse-pw',
        '--max-sessions',
        '2',
        '--handshake-timeout',
        String(HANDSHAKE_S),
        '--engine',
        'native',
        '--data-dir',
        tempDir(),
        '--log-level',
        'warn',
      ],
      /btest server on/,
    );
  }, 60_000);

  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    ns?.drop();
  });

  it('the real clients measure within 5 % of their undisturbed figures; memory bounded; every abuser closed by the deadline', async () => {
    const baseRmbt = await rmbt();
    const baseBtest = { rx: await btest('receive'), tx: await btest('send') };
    expect(baseRmbt.status, JSON.stringify(baseRmbt.error)).toBe('ok');
    expect(baseBtest.rx.status, JSON.stringify(baseBtest.rx.error)).toBe('ok');
    expect(baseBtest.tx.status, JSON.stringify(baseBtest.tx.error)).toBe('ok');
    const pids = { rmbt: rmbtServer.pid!, btest: btestServer.pid! };
    const rss0 = { rmbt: rssKb(pids.rmbt), btest: rssKb(pids.btest) };
    const fd0 = { rmbt: fds(pids.rmbt), btest: fds(pids.btest) };
    const peak = { ...rss0 };
    // The peak after the measurements ended, while the abuse goes on: memory that grows with the
    // number of abusive connections keeps climbing there; allocator slack does not.
    let measuring = true;
    const late = { rmbt: 0, btest: 0 };
    const sampler = setInterval(() => {
      const now = { rmbt: rssKb(pids.rmbt), btest: rssKb(pids.btest) };
      peak.rmbt = Math.max(peak.rmbt, now.rmbt);
      peak.btest = Math.max(peak.btest, now.btest);
      if (!measuring) {
        late.rmbt = Math.max(late.rmbt, now.rmbt);
        late.btest = Math.max(late.btest, now.btest);
      }
    }, 200);

    const abuseMs = 26_000;
    const abuser = runInNs(
      [
        'node',
        ABUSER,
        JSON.stringify({
          host: '127.0.0.1',
          ...PORTS,
          count: 200,
          durationMs: abuseMs,
          graceMs: (HANDSHAKE_S + 3) * 1000,
          // Five abusive hosts; the real clients measure from 127.0.0.1.
          sources: ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6'],
        }),
      ],
      abuseMs + 30_000,
    );
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    const underRmbt = await rmbt();
    const underBtest = { rx: await btest('receive'), tx: await btest('send') };
    const measuredMs = Date.now() - t0;
    const peakWhileMeasuring = { ...peak };
    measuring = false;
    const report = JSON.parse(await abuser) as {
      opened: number;
      capped: boolean;
      closedByPeer: number;
      stillOpen: number;
      maxCloseMs: number;
      kinds: Record<string, { n: number; closed: number; maxCloseMs: number }>;
    };
    clearInterval(sampler);
    // Sockets the servers closed finish their close handshake within a second or two.
    let fd1 = { rmbt: fds(pids.rmbt), btest: fds(pids.btest) };
    for (let i = 0; i < 50 && (fd1.rmbt > fd0.rmbt || fd1.btest > fd0.btest); i++) {
      await new Promise((r) => setTimeout(r, 200));
      fd1 = { rmbt: fds(pids.rmbt), btest: fds(pids.btest) };
    }
    // Undisturbed again: the reference when the machine itself was slower or faster for a while.
    const afterRmbt = await rmbt();
    const afterBtest = { rx: await btest('receive'), tx: await btest('send') };
    const fdList = execFileSync('sh', [
      '-c',
      `ls -l /proc/${pids.rmbt}/fd | awk '{print $NF}' | sed 's/[0-9]*//g' | sort | uniq -c`,
    ]).toString();

    const summary = {
      rmbt: {
        base: [baseRmbt.download?.mbps, baseRmbt.upload?.mbps],
        abused: [underRmbt.download?.mbps, underRmbt.upload?.mbps],
        after: [afterRmbt.download?.mbps, afterRmbt.upload?.mbps],
      },
      btest: {
        base: [baseBtest.rx.download?.mbps, baseBtest.tx.upload?.mbps],
        abused: [underBtest.rx.download?.mbps, underBtest.tx.upload?.mbps],
        after: [afterBtest.rx.download?.mbps, afterBtest.tx.upload?.mbps],
      },
      rssKb: { before: rss0, peak, peakWhileMeasuring, afterMeasuring: late },
      fds: { before: fd0, after: fd1, rmbtKinds: fdList },
      abuser: report,
      measuredMs,
    };
    console.log(JSON.stringify(summary, null, 1));
    // The measurements ran while the abuse lasted.
    expect(measuredMs).toBeLessThan(abuseMs);
    expect(underRmbt.status, JSON.stringify(underRmbt.error)).toBe('ok');
    expect(underBtest.rx.status, JSON.stringify(underBtest.rx.error)).toBe('ok');
    expect(underBtest.tx.status, JSON.stringify(underBtest.tx.error)).toBe('ok');
    for (const [base, under, after] of [
      [baseRmbt.download, underRmbt.download, afterRmbt.download],
      [baseRmbt.upload, underRmbt.upload, afterRmbt.upload],
      [baseBtest.rx.download, underBtest.rx.download, afterBtest.rx.download],
      [baseBtest.tx.upload, underBtest.tx.upload, afterBtest.tx.upload],
    ] as const) {
      const ok =
        within(under!.mbps, base!.mbps, 5) || (after !== undefined && within(under!.mbps, after.mbps, 5));
      expect(ok, JSON.stringify(summary)).toBe(true);
    }
    // Every abusive connection was closed by the servers, none later than the handshake deadline (+1 s).
    expect(report.opened).toBeGreaterThanOrEqual(200);
    // Replaced all along: the abuse lasted the whole 26 s, not until the abuser's own bound.
    expect(report.capped).toBe(false);
    expect(report.stillOpen).toBe(0);
    expect(report.maxCloseMs).toBeLessThan((HANDSHAKE_S + 1) * 1000);
    // Memory: bounded growth while serving hundreds of half-open connections; no descriptors left behind.
    // The RMBT server's live JS heap stays at 15-21 MB all through (--trace-gc); RSS grows by what V8
    // commits in the burst plus malloc arena slack: 22 MB here alone. (When the abusers all came from
    // the client's own address, the per-address cap evicted them as fast as they connected, 10 000
    // connections in a few seconds, and RSS grew by 47-69 MB: the abuser hit its own bound and the
    // measurement ran beside far fewer abusers than the test says.)
    expect(peak.rmbt - rss0.rmbt).toBeLessThan(64 * 1024);
    expect(peak.btest - rss0.btest).toBeLessThan(64 * 1024);
    // And no climbing while only the abuse goes on (some 700 more connections after the measurements).
    expect(late.rmbt - peakWhileMeasuring.rmbt).toBeLessThan(16 * 1024);
    expect(late.btest - peakWhileMeasuring.btest).toBeLessThan(16 * 1024);
    expect(fd1.rmbt).toBeLessThanOrEqual(fd0.rmbt);
    expect(fd1.btest).toBeLessThanOrEqual(fd0.btest);
  }, 180_000);
});
