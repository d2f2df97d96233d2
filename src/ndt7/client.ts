import { readFileSync } from 'node:fs';
import type { Engine, StreamOutcome } from '../engine/types.js';
import { bounded, ProbeError } from '../errors.js';
import type { LatencySample } from '../measure/latency.js';
import type { Ndt7TestEnd } from '../measure/result.js';
import type { Channel, TlsInfo } from '../net/channel.js';
import { openStream, type StreamTiming } from '../net/connect.js';
import type { TlsOptions } from '../net/tls.js';
import { newWsKey, wsAccept } from '../net/ws.js';
import { USER_AGENT } from './locate.js';
import {
  HARD_LIMIT_MS,
  MAX_MESSAGE,
  MAX_TEXT,
  type Measurement,
  messageSizes,
  parseMeasurement,
  SCALE_DIVISOR,
  SUBPROTOCOL,
  TEST_MS,
} from './messages.js';

/**
 * One ndt7 test, download or upload, against one test URL (ndt7 spec, "The download and upload
 * tests"): a WebSocket upgrade naming the ndt7 subprotocol, then binary messages from the sender of this
 * test for about ten seconds and JSON measurements from either side. Binary bytes are counted, never
 * kept; text messages are parsed and bounded; WebSocket pings are answered with their payload (the
 * Channel does that). The server's close, an EOF or a reset at the end is the normal end of a test.
 */

export interface Ndt7Endpoint {
  /** ws:// or wss:// URL with the test's path and query (a Locate URL carries the access token) */
  url: URL;
  /** certificate checks for wss (M-Lab: the system's CAs; one's own server may add a CA or skip them) */
  tls: TlsOptions;
}

export interface TestOptions {
  engine: Engine;
  ipVersion: 'any' | '4' | '6';
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** live figure for the page and the CLI: Mbit/s so far */
  onProgress?: ((mbps: number) => void) | undefined;
  /** the upload's length (ms): the spec's ten seconds unless a test of ours asks for less */
  testMs?: number;
  /** the test's connection is up: probes beside it may start */
  onStart?: (() => void) | undefined;
}

export interface TestOutcome {
  test: 'download' | 'upload';
  /** binary payload bytes we received (download) or sent (upload) */
  bytes: number;
  /** (ns since the handshake completed, cumulative bytes) */
  points: { t: number; b: number }[];
  /** ns from the handshake to the test's end */
  durationNs: number;
  /** the server's measurements, in order (at most MAX_KEPT; the last is always kept) */
  server: Measurement[];
  /** the server's TCPInfo.RTT as it went, against our clock (ms since the handshake) */
  serverRtt: LatencySample[];
  /** how the test ended: the server closed (close frame, EOF, reset), our own duration, or the hard limit */
  end: Ndt7TestEnd;
  timing: StreamTiming;
  tls?: TlsInfo;
  engine: 'native' | 'js';
  /** text messages that were not measurements we could read (ignored, as the spec allows) */
  ignoredText: number;
}

/** Measurements kept per test: ~40 in ten seconds; a server that sends far more keeps only the newest. */
const MAX_KEPT = 400;
const ns = (from: bigint) => Number(process.hrtime.bigint() - from);

export function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ProbeError('BP_ERR_CONFIG', `ca ${path}: ${(err as Error).message}`);
  }
}

function hostOf(url: URL): { host: string; port: number } {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port ? Number(url.port) : url.protocol === 'wss:' ? 443 : 80;
  return { host, port };
}

/** The upgrade request, the way ndt7 clients send it (subprotocol, our User-Agent). */
function upgradeRequest(url: URL, key: string): string {
  return (
    `GET ${url.pathname}${url.search} HTTP/1.1\r\n` +
    `Host: ${url.host}\r\n` +
    'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
    `Sec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n` +
    `User-Agent: ${USER_AGENT}\r\n\r\n`
  );
}

/** A refusal of the upgrade, coded: a token problem is worth asking Locate again, the rest is not ndt7. */
export class UpgradeRefused extends ProbeError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super('BP_ERR_NDT7_PROTOCOL', message);
  }
  /** 401/403: the access token was refused (expired: it lives one minute) */
  get tokenRefused(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

async function handshake(
  ch: Channel,
  url: URL,
  timeoutMs: number,
  onText: (m: Buffer, at?: bigint) => void,
): Promise<void> {
  const key = newWsKey();
  ch.writeRaw(Buffer.from(upgradeRequest(url, key), 'latin1'));
  const head = await ch.readHttpHead(timeoutMs).catch((err: ProbeError) => {
    throw err.code === 'BP_ERR_PEER_CLOSED'
      ? new ProbeError('BP_ERR_NDT7_PROTOCOL', 'the server closed instead of answering the ndt7 upgrade')
      : err.code === 'BP_ERR_PROTOCOL'
        ? new ProbeError('BP_ERR_NDT7_PROTOCOL', `the server's answer to the upgrade: ${err.message}`)
        : err;
  });
  const first = head.split('\r\n')[0] ?? '';
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(first)?.[1] ?? 0);
  if (status !== 101)
    throw new UpgradeRefused(
      status,
      `the server answered ${JSON.stringify(bounded(first, 120))} to the ndt7 upgrade`,
    );
  if (/^sec-websocket-accept:\s*(\S+)\s*$/im.exec(head)?.[1] !== wsAccept(key))
    throw new ProbeError('BP_ERR_NDT7_PROTOCOL', 'wrong Sec-WebSocket-Accept in the upgrade answer');
  const proto = /^sec-websocket-protocol:\s*(.*?)\s*$/im.exec(head)?.[1];
  if (proto !== SUBPROTOCOL)
    throw new ProbeError(
      'BP_ERR_NDT7_PROTOCOL',
      proto
        ? `the server chose the subprotocol ${JSON.stringify(bounded(proto, 80))}, not ${SUBPROTOCOL}`
        : `the server did not confirm the ${SUBPROTOCOL} subprotocol`,
    );
  // a receiver must take messages up to 1<<24 bytes (the spec); text beyond MAX_TEXT is hostile. The
  // native loop may drive the test: nothing but the loop writes to the connection until it is over.
  ch.enableWs('client', {
    maxFrame: MAX_MESSAGE,
    text: { max: MAX_TEXT, onMessage: onText, native: true },
  });
}

/** Runs one test; throws coded errors for what keeps the test from starting or breaks it off early. */
export async function runTest(
  ep: Ndt7Endpoint,
  test: 'download' | 'upload',
  o: TestOptions,
): Promise<TestOutcome> {
  const { host, port } = hostOf(ep.url);
  const { channel, timing } = await openStream({
    host,
    port,
    ipVersion: o.ipVersion,
    tls: ep.url.protocol === 'wss:' ? ep.tls : undefined,
    timeoutMs: o.timeoutMs,
    signal: o.signal,
  });
  const server: Measurement[] = [];
  const serverRtt: LatencySample[] = [];
  let ignoredText = 0;
  let t0 = process.hrtime.bigint();
  // `at`: when the message came (a native loop hands its messages over at the end of the test)
  const onText = (m: Buffer, at = process.hrtime.bigint()) => {
    const got = parseMeasurement(m);
    if (!got) {
      ignoredText++;
      return;
    }
    if (server.length >= MAX_KEPT) server.splice(0, server.length - MAX_KEPT + 1);
    server.push(got);
    const rtt = got.TCPInfo?.RTT;
    // the kernel's smoothed RTT of the loaded connection (µs); a figure over a minute is no RTT
    if (rtt !== undefined && rtt > 0 && rtt < 60e6 && serverRtt.length < 10_000)
      serverRtt.push({ t_ms: Math.max(0, Number(at - t0) / 1e6), ms: rtt / 1e3 });
  };
  const abort = () => channel.close();
  o.signal?.addEventListener('abort', abort, { once: true });
  try {
    const u0 = process.hrtime.bigint();
    await handshake(channel, ep.url, o.timeoutMs, onText);
    timing.upgrade_ms = Math.round(ns(u0) / 1e3) / 1e3;
    t0 = process.hrtime.bigint();
    o.onStart?.();
    const out = test === 'download' ? await download(channel, t0, o) : await upload(channel, t0, o);
    if (o.signal?.aborted) throw new ProbeError('BP_ERR_ABORTED');
    const tls = channel.tlsInfo();
    return { test, ...out, server, serverRtt, timing, ...(tls ? { tls } : {}), ignoredText };
  } finally {
    o.signal?.removeEventListener('abort', abort);
    channel.close();
  }
}

/** Progress every 250 ms from the engine's live counter. */
function progress(counters: Float64Array, t0: bigint, on?: (mbps: number) => void): () => void {
  if (!on) return () => {};
  const timer = setInterval(() => {
    const s = ns(t0) / 1e9;
    if (s > 0.2) on((counters[0]! * 8) / s / 1e6);
  }, 250);
  return () => clearInterval(timer);
}

/** The spec's 15 s kill for a 10 s test: five seconds past the test's length. */
function hardLimitMs(o: TestOptions): number {
  return (o.testMs ?? TEST_MS) + HARD_LIMIT_MS - TEST_MS;
}

/**
 * An end the spec allows (EOF, reset, a close frame, a timeout near the end) or a failure. Every end the
 * peer causes comes with a code, so a download without one was cut at the hard limit, and an upload
 * without one ran its length. (Comparing the end time with the limit is not enough: a timer can fire a
 * few milliseconds before its time on a busy event loop.)
 */
function ending(out: StreamOutcome, test: 'download' | 'upload', testMs: number): TestOutcome['end'] {
  const code = out.error?.code;
  if (!code) return test === 'download' ? 'limit' : 'duration';
  const bytes = out.bytes;
  if (code === 'BP_ERR_PEER_CLOSED') return 'closed';
  if (code === 'BP_ERR_STALLED' && bytes > 0 && out.endNs >= testMs * 0.9 * 1e6) return 'stalled';
  throw new ProbeError(code, out.error!.message);
}

async function download(ch: Channel, t0: bigint, o: TestOptions) {
  const run = o.engine.run(
    [ch],
    {
      mode: 'receive',
      framing: { kind: 'raw' },
      sampleNs: 50e6,
      idleTimeoutMs: o.timeoutMs,
      // the server ends the test at ten seconds; a server that never does is cut at the hard limit
      maxDurationMs: hardLimitMs(o),
    },
    [t0],
  );
  const stop = progress(run.counters, t0, o.onProgress);
  try {
    const [out] = (await run.done) as [StreamOutcome];
    const end = ending(out, 'download', o.testMs ?? TEST_MS);
    if (!out.bytes) throw new ProbeError('BP_ERR_STALLED', 'the server sent no data in the download test');
    // the download's time is up to its last bytes, as M-Lab's clients count it: a server that stops
    // sending without closing (ndt7-server-go-minimal) leaves an idle tail up to the hard limit
    const durationNs = out.lastNs && out.lastNs > 0 ? out.lastNs : out.endNs;
    return { bytes: out.bytes, points: out.points, durationNs, end, engine: run.kind };
  } finally {
    stop();
  }
}

/** How long the client waits after its close for the server's last measurement and close. */
const CLOSE_WAIT_MS = 2000;

async function upload(ch: Channel, t0: bigint, o: TestOptions) {
  // messages grow from 8 KiB, doubling while at most 1/16 of what was sent, up to 1 MiB (the spec's
  // appendix; M-Lab's Go client and server use the same cap)
  const sizes = messageSizes();
  // two variants per size: random enough for a link, and 4 MiB in all rather than 16
  const sets = sizes.map((n) => ch.chunkSet(n, false, 2));
  const run = o.engine.run(
    [ch],
    {
      mode: 'send',
      framing: { kind: 'raw' },
      chunks: [sets[0]!],
      scale: { sets: sets.slice(1), divisor: SCALE_DIVISOR },
      until: { durationNs: (o.testMs ?? TEST_MS) * 1e6 },
      sampleNs: 50e6,
      idleTimeoutMs: o.timeoutMs,
      // binary data from the server during the upload is counted (and refused below), never kept
      countInbound: true,
      // the native loop closes itself: our close, then the server's last measurement and its close
      closeWaitMs: CLOSE_WAIT_MS,
    },
    [t0],
  );
  const stop = progress(run.counters, t0, o.onProgress);
  let out: StreamOutcome;
  try {
    [out] = (await run.done) as [StreamOutcome];
  } finally {
    stop();
  }
  // the spec: binary messages go only from the sender of the test; a server that sends data during the
  // upload is not measuring it
  if ((out.rx?.bytes ?? 0) > 0)
    throw new ProbeError(
      'BP_ERR_PROTOCOL',
      `the server sent ${out.rx!.bytes} bytes of binary data during the upload`,
    );
  const end = ending(out, 'upload', o.testMs ?? TEST_MS);
  // our close, then the server's last measurement and its close (its TCPInfo is the upload figure)
  if (!ch.closed) {
    ch.writeClose(1000);
    await ch.waitClosed(CLOSE_WAIT_MS).catch(() => {});
  }
  return { bytes: out.bytes, points: out.points, durationNs: out.endNs, end, engine: run.kind };
}
