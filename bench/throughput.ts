/**
 * Throughput benchmark on loopback: our client with the native and the js engine, the Python
 * reference client (PYC) and iperf3, against rmbtd and against our own server, in one invocation so the
 * ratios compare like with like on this machine. Prints a table; asserts nothing.
 *
 * Optional peers, never committed (build them outside the repo):
 *   BENCH_RMBTD=/path/to/rmbtd        the reference C measurement server
 *   BENCH_PYC=/path/to/clientPython   the Python client's folder (run as `python3 -m rmbt_client`)
 * BENCH_DURATION (s, default 4), BENCH_THREADS (default "1,3").
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { generate } from 'selfsigned';
import { loadSettings } from '../src/config/load.js';
import { loadEngine } from '../src/engine/loader.js';
import type { RunResult } from '../src/measure/result.js';
import { ControlServer } from '../src/rmbt/controlServer.js';
import { measureRmbt } from '../src/rmbt/measure.js';
import { type Row, runMeasured, table } from './lib.js';

const D = Number(process.env.BENCH_DURATION ?? 4);
const THREADS = (process.env.BENCH_THREADS ?? '1,3').split(',').map(Number);
/** BENCH_NDT7=0 leaves out the ndt7 rows (about 45 s: the spec's ten seconds each way, two engines) */
const WITH_NDT7 = process.env.BENCH_NDT7 !== '0';
const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const tmp = mkdtempSync(join(tmpdir(), 'bp-bench-'));
const children: ReturnType<typeof spawn>[] = [];
const rows: Row[] = [];

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.destroy();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

function start(cmd: string, args: string[], cwd?: string) {
  const c = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(c);
  return c;
}

const rmbtdPath = process.env.BENCH_RMBTD;
const pycDir = process.env.BENCH_PYC;
const KEY = 'bench-shared-key-0123456789';

// --- peers ----------------------------------------------------------------------------------------
const ours = { http: await freePort(), tls: await freePort(), control: await freePort() };
start(process.execPath, [
  CLI,
  'server',
  'rmbt',
  '--bind',
  '127.0.0.1',
  '--port',
  String(ours.http),
  '--tls-port',
  String(ours.tls),
  '--control-port',
  String(ours.control),
  '--secret-key',
  KEY,
  '--data-dir',
  tmp,
  '--engine',
  'native',
  '--no-encryption',
  '--log-level',
  'warn',
]);
await waitPort(ours.control);

// Our ndt7 server (js engine: it writes measurements beside its data) for the ndt7 client's rows.
const ndt7Port = await freePort();
start(process.execPath, [
  CLI,
  'server',
  'ndt7',
  '--bind',
  '127.0.0.1',
  '--port',
  String(ndt7Port),
  '--data-dir',
  tmp,
  '--log-level',
  'warn',
]);
await waitPort(ndt7Port);

let rmbtd: { http: number; tls: number } | undefined;
if (rmbtdPath) {
  const dir = mkdtempSync(join(tmpdir(), 'bp-rmbtd-'));
  writeFileSync(join(dir, 'random'), randomBytes(32 << 20));
  writeFileSync(join(dir, 'secret.key'), `${KEY} bench\n`);
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
  });
  writeFileSync(join(dir, 'c.pem'), pems.cert);
  writeFileSync(join(dir, 'k.pem'), pems.private);
  rmbtd = { http: await freePort(), tls: await freePort() };
  start(
    rmbtdPath,
    [
      '-w',
      '-l',
      `127.0.0.1:${rmbtd.http}`,
      '-L',
      `127.0.0.1:${rmbtd.tls}`,
      '-c',
      'c.pem',
      '-k',
      'k.pem',
      '-t',
      '64',
    ],
    dir,
  );
  await waitPort(rmbtd.http);
}
const target = rmbtd ?? ours;
const targetName = rmbtd ? 'rmbtd' : 'our server';

/** A control server of ours that sends PYC to rmbtd (CTRL-style tokens with the shared key). */
async function controlFor(
  ports: { http?: number; tls?: number },
  encryption: boolean,
): Promise<ControlServer> {
  const c = new ControlServer({
    host: '127.0.0.1',
    port: 0,
    key: KEY,
    ports,
    encryption,
    duration: D,
    threads: 3,
    pings: 10,
  });
  await c.start();
  return c;
}

// --- clients --------------------------------------------------------------------------------------
async function ourClient(
  group: string,
  who: string,
  engine: 'native' | 'js',
  port: number,
  transport: string,
  threads: number,
  env: NodeJS.ProcessEnv = {},
) {
  const r = await runMeasured(
    [
      process.execPath,
      CLI,
      'measure',
      'rmbt',
      '--server',
      `127.0.0.1:${port}`,
      '--key',
      KEY,
      '--transport',
      transport,
      '--threads',
      String(threads),
      '--duration',
      String(D),
      '--pretest-duration',
      '0.5',
      '--ping-duration',
      '0.2',
      '--tls-insecure',
      '--engine',
      engine,
      '--json',
    ],
    { env },
  );
  let res: RunResult;
  try {
    res = JSON.parse(r.out) as RunResult;
  } catch {
    console.error(`${who}: no result`, r.err.slice(0, 300));
    return;
  }
  if (res.status !== 'ok') console.error(`${who}: ${res.error?.code} ${res.error?.message}`);
  const gb = ((res.download?.bytes_total ?? 0) + (res.upload?.bytes_total ?? 0)) / 1e9;
  for (const dir of ['download', 'upload'] as const) {
    const d = res[dir];
    if (d)
      rows.push({
        group,
        who,
        dir,
        threads,
        mbps: d.mbps,
        cpuPerGB: r.cpuS / gb,
        note: `engine ${res.engine}${res.server.tls ? `, ${res.server.tls.cipher.replace(/^TLS_/, '')}` : ''}`,
      });
  }
}

/** Our ndt7 client (one connection, the spec's ten seconds each way) on one engine. */
async function ourNdt7(engine: 'native' | 'js') {
  const who = `ours ${engine}`;
  const r = await runMeasured([
    process.execPath,
    CLI,
    'measure',
    'ndt7',
    '--server',
    `127.0.0.1:${ndt7Port}`,
    '--scheme',
    'ws',
    '--no-loaded-latency',
    '--engine',
    engine,
    '--json',
  ]);
  let res: RunResult;
  try {
    res = JSON.parse(r.out) as RunResult;
  } catch {
    console.error(`ndt7 ${who}: no result`, r.err.slice(0, 300));
    return;
  }
  if (res.status !== 'ok') console.error(`ndt7 ${who}: ${res.error?.code} ${res.error?.message}`);
  const gb = ((res.download?.bytes ?? 0) + (res.upload?.bytes ?? 0)) / 1e9;
  for (const dir of ['download', 'upload'] as const) {
    const d = res[dir];
    if (d)
      rows.push({
        group: 'ndt7 vs our ndt7 server',
        who,
        dir,
        threads: 1,
        mbps: d.mbps,
        cpuPerGB: r.cpuS / gb,
        note: `engine ${res.engine}${dir === 'upload' ? `, ${res.ndt7?.upload_source ?? '?'}'s figure` : ''}`,
      });
  }
}

async function pyc(group: string, who: string, controlPort: number, threads: number, ws = false) {
  if (!pycDir) return;
  const r = await runMeasured(
    [
      'python3',
      '-m',
      'rmbt_client',
      '-h',
      `http://127.0.0.1:${controlPort}`,
      ws ? '--ws' : '--http',
      '--no-tls-verify',
      '-t',
      String(threads),
      '-d',
      String(D),
      '-u',
      '11111111-2222-3333-4444-555555555555',
    ],
    { cwd: pycDir },
  );
  const grab = (name: string) => {
    const m = new RegExp(`^${name}:\\s+([\\d.]+) Mbit/s\\s+\\((\\d+) bytes`, 'm').exec(r.out);
    return m ? { mbps: Number(m[1]), bytes: Number(m[2]) } : undefined;
  };
  const dl = grab('Download');
  const ul = grab('Upload');
  if (!dl || !ul) {
    console.error(`${who}: no result`, r.out.slice(-300), r.err.slice(-300));
    return;
  }
  const gb = (dl.bytes + ul.bytes) / 1e9;
  rows.push({ group, who, dir: 'download', threads, mbps: dl.mbps, cpuPerGB: r.cpuS / gb });
  rows.push({ group, who, dir: 'upload', threads, mbps: ul.mbps, cpuPerGB: r.cpuS / gb });
}

async function iperf(threads: number) {
  for (const dir of ['download', 'upload'] as const) {
    const port = await freePort();
    const srv = start('iperf3', ['-s', '-1', '-p', String(port), '-B', '127.0.0.1']);
    // No connect probe here: iperf3 -1 would take the probe as its one client.
    await new Promise((r) => setTimeout(r, 500));
    const r = await runMeasured([
      'iperf3',
      '-c',
      '127.0.0.1',
      '-p',
      String(port),
      '-t',
      String(D),
      '-P',
      String(threads),
      '--json',
      ...(dir === 'download' ? ['-R'] : []),
    ]);
    srv.kill();
    try {
      const j = JSON.parse(r.out) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
      rows.push({
        group: 'reference',
        who: 'iperf3',
        dir,
        threads,
        mbps: j.end.sum_received.bits_per_second / 1e6,
        cpuPerGB: r.cpuS / (j.end.sum_received.bytes / 1e9),
      });
    } catch {
      console.error('iperf3: no result', r.err.slice(0, 200));
    }
  }
}

/** In-process run with the event-loop delay monitor on: what a native run costs the JS thread. */
async function eventLoop(engineName: 'native' | 'js', tls = false) {
  const engine = loadEngine(engineName);
  const h = monitorEventLoopDelay({ resolution: 5 });
  const s = loadSettings({
    flags: {
      rmbt: {
        server: `127.0.0.1:${tls ? ours.tls : ours.http}`,
        key: KEY,
        transport: tls ? 'https' : 'http',
        tls_insecure: 'true',
        threads: '3',
        duration: String(D),
        pretest_duration: '0.5',
      },
    },
  });
  h.enable();
  const r = await measureRmbt(s.rmbt, { engine, general: loadSettings().general });
  h.disable();
  return {
    engine: r.engine,
    tls,
    p99: h.percentile(99) / 1e6,
    max: h.max / 1e6,
    dl: r.download?.mbps ?? 0,
  };
}

try {
  // Control servers of ours that send PYC to the target's plain and TLS ports (rmbtd's, or our server's:
  // it accepts tokens signed with the same key).
  const ctlPlain = pycDir ? await controlFor({ http: target.http }, false) : undefined;
  const ctlTls = pycDir ? await controlFor({ tls: target.tls }, true) : undefined;
  for (const t of THREADS) {
    await ourClient(`vs ${targetName}`, 'ours native', 'native', target.http, 'http', t);
    await ourClient(`vs ${targetName}`, 'ours js', 'js', target.http, 'http', t);
    if (ctlPlain) await pyc(`vs ${targetName}`, 'PYC (C loop)', ctlPlain.port, t);
    await iperf(t);
    // Our native server serving the Python client, next to rmbtd serving it (above).
    await pyc('PYC vs our server', 'PYC → ours', ours.control, t);
    await ourClient(`TLS vs ${targetName}`, 'ours native', 'native', target.tls, 'https', t);
    await ourClient(`TLS vs ${targetName}`, 'ours js', 'js', target.tls, 'https', t);
    if (ctlTls) await pyc(`TLS vs ${targetName}`, 'PYC TLS', ctlTls.port, t);
    // Our own server's TLS port (native TLS sessions on the server side too), next to rmbtd's.
    if (rmbtd) {
      await ourClient('TLS vs our server', 'ours native', 'native', ours.tls, 'https', t);
      await ourClient('TLS vs our server', 'ours js', 'js', ours.tls, 'https', t);
    }
    // What a CPU without AES instructions (a Raspberry Pi 4) pays: AES-NI and PCLMUL hidden from the
    // client's OpenSSL, each cipher first in turn, and the probe's own choice.
    const noAes = { OPENSSL_ia32cap: '~0x200000200000000' };
    for (const prefer of ['aes', 'chacha', ''] as const)
      await ourClient(
        `TLS, no AES (${targetName})`,
        prefer ? `native, ${prefer} first` : 'native, own choice',
        'native',
        target.tls,
        'https',
        t,
        { ...noAes, BANDWIDTH_PROBE_TLS_PREFER: prefer },
      );
  }
  // ndt7: the upload's figure is the server's TCPInfo (our js server reads slower than a native one
  // would), so the client's own CPU per GB is the figure that compares the engines here
  if (WITH_NDT7) {
    await ourNdt7('native');
    await ourNdt7('js');
  }
  await ctlPlain?.close();
  await ctlTls?.close();
  const eld = [
    await eventLoop('native'),
    await eventLoop('js'),
    await eventLoop('native', true),
    await eventLoop('js', true),
  ];

  const ref = (r: Row): Row | undefined => {
    if (r.group.startsWith('ndt7'))
      return rows.find((x) => x.group === r.group && x.who === 'ours js' && x.dir === r.dir);
    if (r.group === 'PYC vs our server')
      return rows.find((x) => x.who === 'PYC (C loop)' && x.dir === r.dir && x.threads === r.threads);
    if (r.group.startsWith('TLS, no AES'))
      return rows.find((x) => x.who === 'native, aes first' && x.dir === r.dir && x.threads === r.threads);
    if (r.group.startsWith('TLS'))
      return (
        rows.find((x) => x.who === 'PYC TLS' && x.dir === r.dir && x.threads === r.threads) ??
        rows.find(
          (x) =>
            x.group.startsWith('TLS') && x.who === 'ours js' && x.dir === r.dir && x.threads === r.threads,
        )
      );
    return (
      rows.find((x) => x.who === 'PYC (C loop)' && x.dir === r.dir && x.threads === r.threads) ??
      rows.find((x) => x.who === 'iperf3' && x.dir === r.dir && x.threads === r.threads)
    );
  };
  console.log(
    `\nLoopback, ${D} s per direction; peers: ${rmbtd ? 'rmbtd' : 'our server (BENCH_RMBTD not set)'}, PYC ${pycDir ? 'present' : 'absent (BENCH_PYC not set)'}.`,
  );
  console.log(
    'Ratios compare with the Python client (PYC) in the same group, or with iperf3 when PYC is absent.\n',
  );
  console.log(table(rows, ref));
  console.log(
    '\nEvent-loop delay during an in-process run (3 threads, HTTP upgrade plain and in TLS, our server in another process):',
  );
  for (const e of eld)
    console.log(
      `  ${e.tls ? 'TLS  ' : 'plain'} engine ${e.engine}: p99 ${e.p99.toFixed(2)} ms, max ${e.max.toFixed(2)} ms (download ${(e.dl / 1000).toFixed(2)} Gbit/s)`,
    );
} finally {
  for (const c of children) c.kill('SIGKILL');
}
process.exit(0);
