/**
 * Event-stream and slow-head floods against the real `serve` process (built CLI) started with a soft and hard
 * open-file limit of 512: 600 event streams, then 1000 half-sent request heads while a run is going.
 * Before the budget, the streams took every descriptor and the next run failed `BP_ERR_CONNECT … EMFILE`.
 * Attackers connect from 127.0.0.2; bounded in count and time.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BtestServer } from '../../src/btest/server.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { startBtestServer } from '../helpers/btest.js';
import { freePort, spawnReady } from '../helpers/proc.js';
import { tempDir } from '../helpers/rmbt.js';

const CLI = join(resolve(import.meta.dirname, '../..'), 'dist/cli.js');
const ATTACKER = '127.0.0.2';
const children: ChildProcess[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fds = (pid: number) =>
  Number(
    execFileSync('sh', ['-c', `ls /proc/${pid}/fd | wc -l`])
      .toString()
      .trim(),
  );

let btest: BtestServer;
let srv: ChildProcess;
let port = 0;

function request(method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((res, rej) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method,
        agent: false,
        timeout: 10_000,
        headers: body ? { 'content-type': 'application/json' } : {},
      },
      (r) => {
        let text = '';
        r.setEncoding('utf8');
        r.on('data', (d: string) => {
          text += d;
        });
        r.on('end', () => res({ status: r.statusCode ?? 0, text }));
      },
    );
    req.on('error', rej);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

beforeAll(async () => {
  btest = await startBtestServer(new JsEngine(), {
    udpPortStart: 39000,
    auth: 'none',
    user: 'x',
    maxDurationS: 60,
  });
  port = await freePort();
  const dir = tempDir();
  const options = join(dir, 'options.json');
  writeFileSync(
    options,
    JSON.stringify({
      data_dir: join(dir, 'data'),
      log_level: 'info',
      service: { busy_check: 'off' },
      mqtt: { enabled: 'off' },
      web: { bind: '127.0.0.1', port },
      targets: [{ id: 'lan', type: 'btest', host: `127.0.0.1:${btest.port}`, duration: 3 }],
    }),
  );
  srv = (
    await spawnReady(
      'prlimit',
      ['--nofile=512:512', '--', process.execPath, CLI, 'serve', '--options', options],
      /status page listening/,
      children,
    )
  ).proc;
}, 30_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await btest.close();
});

describe('serve with 512 descriptors under a connection flood (real process)', () => {
  it('600 event streams, then 1000 half-sent heads during a run: the run is ok, the page recovers', async () => {
    const base = fds(srv.pid!);
    // 600 event streams from another address, 50 at a time
    const streams: http.ClientRequest[] = [];
    let open = 0;
    for (let batch = 0; batch < 12; batch++) {
      await Promise.all(
        Array.from(
          { length: 50 },
          () =>
            new Promise<void>((res) => {
              const req = http.get(
                { host: '127.0.0.1', port, path: '/api/events', agent: false, localAddress: ATTACKER },
                (r) => {
                  open++;
                  r.on('data', () => {});
                  r.on('close', () => open--);
                  res();
                },
              );
              req.on('error', () => res());
              streams.push(req);
            }),
        ),
      );
    }
    await sleep(300);
    expect(open).toBeLessThanOrEqual(32);
    expect(fds(srv.pid!)).toBeLessThan(base + 64);
    expect((await request('GET', '/healthz')).status).toBe(200);

    // a run, and 1000 half-sent request heads while it goes
    const queued = await request('POST', '/api/run', '{"target":"lan"}');
    expect(queued.status, queued.text).toBe(202);
    const socks: net.Socket[] = [];
    let closedByServer = 0;
    for (let i = 0; i < 1000; i++) {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: ATTACKER });
      s.on('error', () => {});
      s.on('data', () => {});
      s.once('close', () => closedByServer++);
      s.write('GET / HTTP/1.1\r\nHost: localhost\r\n');
      socks.push(s);
    }
    const drip = setInterval(() => {
      for (const s of socks) if (!s.destroyed) s.write('X-Slow: 1\r\n');
    }, 2000);
    try {
      // every half-sent head is closed by the server: refused over the budget, or at the 10 s header
      // timeout (checked every 2 s); 25 s leaves room for two busy cores
      const until = Date.now() + 25_000;
      while (closedByServer < socks.length && Date.now() < until) await sleep(200);
      expect(closedByServer).toBe(socks.length);
    } finally {
      clearInterval(drip);
      for (const s of socks) s.destroy();
      for (const r of streams) r.destroy();
    }
    // the run went through the flood
    let runs: { status: string; error_code: string | null; download_mbps: number | null }[] = [];
    const until = Date.now() + 20_000;
    while (Date.now() < until) {
      const r = await request('GET', '/api/runs?target=lan');
      runs = JSON.parse(r.text).runs;
      if (runs.length) break;
      await sleep(300);
    }
    expect(runs[0], JSON.stringify(runs[0])).toMatchObject({ status: 'ok', error_code: null });
    expect(runs[0]!.download_mbps).toBeGreaterThan(0);
    expect((await request('GET', '/healthz')).status).toBe(200);
    expect(srv.exitCode).toBeNull();
    await sleep(500);
    expect(fds(srv.pid!)).toBeLessThan(base + 16);
  }, 90_000);
});
