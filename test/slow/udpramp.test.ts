/**
 * btest UDP with default settings on a shaped link: in a network namespace this test makes
 * (root), with its loopback shaped by tbf, our btest server and client run as real processes. Unlimited
 * UDP (no local or remote speed) must measure the link within 2 % of iperf3 UDP on the same link, in
 * both directions and on both engines, with its ramp left out and no `udp_ramp` flag. iperf3 counts
 * UDP payload; btest counts IP packets (udp_size is the IP size), so iperf3 sends 1472-byte payloads and
 * its figure is compared in IP bytes (× 1500 / 1472).
 *
 * The reference is the better of an iperf3 run before and one after ours: on two busy cores one iperf3
 * run can come in several percent short of the link (CI once saw 191.5 against a 200 Mbit/s link while
 * ours measured 197.8 and the next iperf3 run 198.0). Ours must not be more than 2 % below that
 * reference, and not above it by more than 2 % unless the link itself allows it (the tbf rate is the
 * ceiling nobody can measure past).
 */
import type { ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shapedNamespace } from '../helpers/netns.js';
import { runOutput, spawnReady } from '../helpers/proc.js';
import { tempDir } from '../helpers/rmbt.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/cli.js');
const NS = `bpur${process.pid % 100000}`;
const RATE_MBIT = Number(process.env.UDP_RAMP_RATE ?? 200);
const DURATION_S = 5;
const IPERF_PORT = 5209;

const children: ChildProcess[] = [];
const runInNs = (cmd: string[], timeoutMs: number) =>
  runOutput('ip', ['netns', 'exec', NS, ...cmd], timeoutMs);

interface Res {
  status: string;
  error?: { code: string; message: string };
  flags: string[];
  download?: { mbps: number; ramp_ms?: number; udp?: { loss_percent: number } };
  upload?: { mbps: number; ramp_ms?: number };
}

async function iperfUdp(reverse: boolean): Promise<number> {
  const out = await runInNs(
    [
      'iperf3',
      '-c',
      '127.0.0.1',
      '-p',
      String(IPERF_PORT),
      '-u',
      '-b',
      `${Math.round(RATE_MBIT * 1.2)}M`,
      '-l',
      '1472',
      '-t',
      String(DURATION_S),
      '-O',
      '1',
      '-J',
      ...(reverse ? ['-R'] : []),
    ],
    (DURATION_S + 20) * 1000,
  );
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return ((j.end.sum_received.bits_per_second / 1e6) * 1500) / 1472;
}

const btest = async (direction: 'receive' | 'send', engine: string): Promise<Res> =>
  JSON.parse(
    await runInNs(
      [
        'node',
        CLI,
        'measure',
        'btest',
        '--host',
        '127.0.0.1:2000',
        '--protocol',
        'udp',
        '--direction',
        direction,
        '--duration',
        String(DURATION_S),
        '--udp-size',
        '1500',
        '--engine',
        engine,
        '--json',
        '--log-level',
        'warn',
        '--data-dir',
        tempDir(),
      ],
      (DURATION_S + 30) * 1000,
    ),
  ) as Res;

describe(`btest UDP with default settings on a ${RATE_MBIT} Mbit/s link`, () => {
  let ns: ReturnType<typeof shapedNamespace> | undefined;
  beforeAll(async () => {
    ns = shapedNamespace(NS, RATE_MBIT);
    await spawnReady(
      'ip',
      ['netns', 'exec', NS, 'iperf3', '-s', '--forceflush', '-p', String(IPERF_PORT)],
      /listening/,
      children,
    );
    await spawnReady(
      'ip',
      [
        'netns',
        'exec',
        NS,
        'node',
        CLI,
        'server',
        'btest',
        '--bind',
        '127.0.0.1',
        '--auth',
        'none',
        '--data-dir',
        tempDir(),
        '--engine',
        'native',
        '--log-level',
        'info',
      ],
      /btest server listening/,
      children,
    );
  });
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    ns?.drop();
  });

  for (const engine of ['native', 'js']) {
    for (const direction of ['receive', 'send'] as const) {
      it(`${direction}, ${engine} client: within 2 % of iperf3 UDP after the ramp`, async () => {
        const before = await iperfUdp(direction === 'receive');
        const r = await btest(direction, engine);
        const after = await iperfUdp(direction === 'receive');
        const ref = Math.max(before, after);
        const d = direction === 'receive' ? r.download! : r.upload!;
        process.stderr.write(
          `udp ramp ${RATE_MBIT} ${direction} ${engine}: ours ${d?.mbps} Mbit/s (ramp ${d?.ramp_ms} ms, flags ${r.flags.join(' ')}), iperf3 ${before.toFixed(2)} before, ${after.toFixed(2)} after\n`,
        );
        expect(r.error).toBeUndefined();
        expect(r.flags).not.toContain('udp_ramp');
        expect(d.ramp_ms).toBeLessThanOrEqual(2000);
        expect(d.mbps).toBeGreaterThan(ref * 0.98);
        expect(d.mbps).toBeLessThan(Math.max(ref, RATE_MBIT) * 1.02);
      });
    }
  }
});
