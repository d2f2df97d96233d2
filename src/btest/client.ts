import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Engine, EngineJob, StreamOutcome, UdpOutcome } from '../engine/types.js';
import { ProbeError, toProbeError } from '../errors.js';
import { withEnd } from '../measure/speed.js';
import { Channel } from '../net/channel.js';
import { connectRtt, type ProbeOutcome, pace } from '../net/probe.js';
import { cpuMeter } from '../util/cpu.js';
import {
  AUTH_ECSRP5,
  AUTH_MD5,
  AUTH_OK,
  type Command,
  commandFor,
  type Direction,
  decodeStatus,
  encodeCommand,
  encodeJoin,
  encodeMd5Answer,
  encodeStatus,
  HELLO,
  STATUS_SIZE,
  type Status,
  statusesIn,
  UDP_CLIENT_OFFSET,
  udpPayloadFor,
} from './codec.js';
import { bytesToBigInt, clientHello, clientProof } from './ecsrp5.js';

/**
 * The btest client (specs/btest.md): handshake and authentication in TypeScript, bulk data on the engine,
 * the 12-byte status message once a second, and the end by closing the control connection (§10).
 */
export interface BtestParams {
  host: string;
  port: number;
  user?: string;
  password?: string;
  protocol: 'tcp' | 'udp';
  direction: Direction;
  connections: number;
  durationS: number;
  /** TCP: end once this many payload bytes moved (each direction the test runs); durationS bounds it */
  bytes?: number;
  localTxSpeed: number;
  remoteTxSpeed: number;
  udpSize: number;
  randomData: boolean;
  ipVersion: 'any' | '4' | '6';
  ioTimeoutMs: number;
  /** TCP connect round trips to the btest port before and during the transfer */
  loadedLatency?: boolean;
}

/**
 * Latency probes: btest has no ping, so round trips are TCP connects to the server's port
 * (connect, then close at once): IDLE_CONNECTS of them before the test, one every LOADED_CONNECT_MS
 * during the transfer.
 */
export const IDLE_CONNECTS = 5;
export const LOADED_CONNECT_MS = 200;

export type BtestEvent =
  | { type: 'phase'; phase: 'connect' | 'auth' | 'test' | 'end' }
  | {
      type: 'second';
      seq: number;
      rx_mbps: number;
      tx_mbps: number;
      /** bytes in this second (UDP: IP bytes, as btest counts) */
      rx_bytes: number;
      tx_bytes: number;
      lost: number;
      local_cpu: number;
      remote_cpu?: number;
    };

export interface BtestRaw {
  auth: 'none' | 'md5' | 'ecsrp5';
  connectMs: number;
  /** from the connect's start until the login was accepted */
  readyMs: number;
  family: 4 | 6;
  /** what this probe received (per stream series), TCP */
  rx?: StreamOutcome[];
  /** what this probe sent, TCP */
  tx?: StreamOutcome[];
  udp?: UdpOutcome;
  /** UDP: received packets and lost packets counted so far, at the end of each second */
  udpSeconds?: { packets: number; lost: number }[];
  /** status messages the server sent (its received bytes per second, its CPU) */
  serverStatus: Status[];
  durationNs: number;
  /** the test ended on BtestParams.bytes, not on time */
  bytesReached?: boolean;
  localCpu: number;
  /** a multi-connection test ran on one connection: the server gave no session token */
  singleFallback: boolean;
  /** TCP connect round trips before (idle) and during the transfer (loaded) */
  latency?: { idle: ProbeOutcome; loaded?: ProbeOutcome };
}

const hr = () => process.hrtime.bigint();

async function connect(p: BtestParams, signal?: AbortSignal): Promise<Channel> {
  const sock = net.connect({
    host: p.host,
    port: p.port,
    family: p.ipVersion === 'any' ? 0 : Number(p.ipVersion),
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new ProbeError('BP_ERR_TIMEOUT', `TCP connect took longer than ${p.ioTimeoutMs} ms`)),
      p.ioTimeoutMs,
    );
    const fail = (e: ProbeError) => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    sock.once('error', (err) => fail(toProbeError(err, 'BP_ERR_CONNECT')));
    signal?.addEventListener('abort', () => fail(new ProbeError('BP_ERR_ABORTED')), { once: true });
  });
  const ch = new Channel(sock);
  // Not yet in the caller's list of connections: a server that never greets (or greets wrongly) must not
  // leave this socket open behind a failed run (the fault soak counts descriptors).
  try {
    const hello = await ch.readBytes(4, p.ioTimeoutMs);
    if (!hello.equals(HELLO))
      throw new ProbeError('BP_ERR_PROTOCOL', `expected the btest HELLO, got ${hello.toString('hex')}`);
  } catch (err) {
    ch.close();
    throw err;
  }
  return ch;
}

/** Reads a word; a close here means the server refused our credentials (§5.1 failure behaviour). */
async function authRead(ch: Channel, n: number, p: BtestParams): Promise<Buffer> {
  try {
    return await ch.readBytes(n, p.ioTimeoutMs);
  } catch (err) {
    const e = toProbeError(err);
    if (e.code === 'BP_ERR_PEER_CLOSED')
      throw new ProbeError('BP_ERR_BTEST_AUTH', 'the server closed the connection during authentication');
    throw e;
  }
}

/** §2, §4, §5: the answer to our command, authentication, and the final OK word with the session token. */
async function authenticate(
  ch: Channel,
  p: BtestParams,
  onMethod?: (m: BtestRaw['auth']) => void,
): Promise<{ auth: BtestRaw['auth']; token: number }> {
  const word = await authRead(ch, 4, p);
  let auth: BtestRaw['auth'] = 'none';
  let ok = word;
  if (word[0] === AUTH_MD5) auth = 'md5';
  else if (word[0] === AUTH_ECSRP5) auth = 'ecsrp5';
  // Said before it can fail, so a refused login still reports the method that was tried.
  onMethod?.(auth);
  if (auth === 'md5') {
    if (p.user === undefined)
      throw new ProbeError('BP_ERR_BTEST_AUTH', 'the server asks for a user name and password (MD5)');
    const challenge = await authRead(ch, 16, p);
    ch.writeRaw(encodeMd5Answer(p.user, p.password ?? '', challenge));
    ok = await authRead(ch, 4, p);
  } else if (auth === 'ecsrp5') {
    if (p.user === undefined)
      throw new ProbeError('BP_ERR_BTEST_AUTH', 'the server asks for a user name and password (EC-SRP5)');
    const hello = clientHello(p.user, bytesToBigInt(randomBytes(32)));
    ch.writeRaw(Buffer.concat([Buffer.from([hello.payload.length]), hello.payload]));
    const len = (await authRead(ch, 1, p))[0]!;
    const proof = clientProof(hello.state, p.password ?? '', await authRead(ch, len, p));
    ch.writeRaw(Buffer.concat([Buffer.from([32]), proof.cc]));
    const len4 = (await authRead(ch, 1, p))[0]!;
    const sc = await authRead(ch, len4, p);
    if (len4 !== 32 || !sc.equals(proof.expectSc))
      throw new ProbeError('BP_ERR_BTEST_AUTH', 'the server could not prove it knows the password');
    ok = await authRead(ch, 4, p);
  }
  if (ok[0] !== AUTH_OK) {
    throw new ProbeError(
      auth === 'none' ? 'BP_ERR_BTEST_REFUSED' : 'BP_ERR_BTEST_AUTH',
      `the server answered ${ok.toString('hex')}`,
    );
  }
  return { auth, token: ok.readUInt16BE(1) };
}

export interface BtestRunOptions {
  engine: Engine;
  signal?: AbortSignal;
  onEvent?: (e: BtestEvent) => void;
  /** the login method the server asked for, as soon as it is known (before the login can fail) */
  onAuth?: (method: BtestRaw['auth']) => void;
}

export async function runBtest(p: BtestParams, opt: BtestRunOptions): Promise<BtestRaw> {
  const emit = (e: BtestEvent) => opt.onEvent?.(e);
  const conns: Channel[] = [];
  const onAbort = () => {
    for (const c of conns) c.close();
  };
  opt.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    emit({ type: 'phase', phase: 'connect' });
    const t0c = hr();
    const main = await connect(p, opt.signal);
    conns.push(main);
    const connectMs = Number(hr() - t0c) / 1e6;
    // The idle round trips once the server has greeted (so an unreachable host fails once, not twice),
    // before the command: nothing moves on the line yet.
    const idle =
      p.loadedLatency === false ? undefined : await idleConnects(p, main.socket.remoteAddress ?? p.host);
    const family = net.isIPv6(main.socket.remoteAddress ?? '') ? 6 : 4;
    const multi = p.protocol === 'tcp' && p.connections > 1;
    const cmd: Command = {
      proto: p.protocol,
      ...commandFor(p.direction),
      randomFlag: p.randomData ? 0 : 1,
      connCount: multi ? p.connections : 0,
      txSize: p.protocol === 'tcp' ? 0x8000 : p.udpSize,
      clientBuf: 0,
      remoteTxSpeed: p.remoteTxSpeed,
      localTxSpeed: p.localTxSpeed,
    };
    main.writeRaw(encodeCommand(cmd));
    emit({ type: 'phase', phase: 'auth' });
    const { auth, token } = await authenticate(main, p, opt.onAuth);
    const readyMs = Number(hr() - t0c) / 1e6;
    // RouterOS always answers a multi-connection command with a token; servers that do not support
    // joins (btest-opensource) answer without one, and the test runs on one connection, flagged.
    const singleFallback = multi && !token;
    if (multi && token) {
      // §6: further connections join with the token and get the same OK word back, without auth.
      for (let i = 1; i < p.connections; i++) {
        const c = await connect(p, opt.signal);
        conns.push(c);
        c.writeRaw(encodeJoin(token));
        const w = await c.readBytes(4, p.ioTimeoutMs);
        if (w[0] !== AUTH_OK)
          throw new ProbeError(
            'BP_ERR_BTEST_REFUSED',
            `the server refused connection ${i + 1}: ${w.toString('hex')}`,
          );
      }
    }
    emit({ type: 'phase', phase: 'test' });
    const raw: BtestRaw = {
      auth,
      connectMs,
      readyMs,
      family,
      serverStatus: [],
      durationNs: p.durationS * 1e9,
      localCpu: 0,
      singleFallback,
      ...(idle ? { latency: { idle } } : {}),
    };
    const cpu = cpuMeter();
    // Loaded probes go to the address the test runs to; the first one once the transfer has started.
    const probes =
      idle &&
      pace(() => connectOnce(p, main.socket.remoteAddress ?? p.host), {
        intervalMs: LOADED_CONNECT_MS,
        firstDelayMs: LOADED_CONNECT_MS,
        maxSamples: Math.ceil((p.durationS * 1000) / LOADED_CONNECT_MS) + 10,
      });
    try {
      if (p.protocol === 'udp') await udpPhase(p, main, family, opt, raw, emit);
      else await tcpPhase(p, conns, opt, raw, emit);
    } finally {
      if (probes && raw.latency) raw.latency.loaded = await probes.stop();
    }
    raw.localCpu = cpu.percent();
    emit({ type: 'phase', phase: 'end' });
    return raw;
  } catch (err) {
    if (opt.signal?.aborted) throw new ProbeError('BP_ERR_ABORTED', 'the run was aborted');
    throw toProbeError(err);
  } finally {
    opt.signal?.removeEventListener('abort', onAbort);
    for (const c of conns) c.close();
  }
}

async function connectOnce(p: BtestParams, host: string): Promise<{ ms: number }> {
  return {
    ms: await connectRtt({
      host,
      port: p.port,
      family: p.ipVersion === 'any' ? 0 : (Number(p.ipVersion) as 4 | 6),
      timeoutMs: p.ioTimeoutMs,
    }),
  };
}

/** The idle round trips: IDLE_CONNECTS connects 50 ms apart, before the test command is sent. */
async function idleConnects(p: BtestParams, host: string): Promise<ProbeOutcome> {
  const pacer = pace(() => connectOnce(p, host), { intervalMs: 50, maxSamples: IDLE_CONNECTS });
  await pacer.finished; // bounded: the first failure or timeout (ioTimeoutMs) ends it
  return pacer.stop();
}

/** Payload counts → IP packet bytes (what btest reports and paces on). */
export function ipBytes(u: UdpOutcome, overhead: number): UdpOutcome {
  const per = (pts: UdpOutcome['rxPoints'], size: number) =>
    pts.map((p) => ({ t: p.t, b: p.b + (size ? (p.b / size) * overhead : 0) }));
  const rxSize = u.packets ? u.bytes / u.packets : 0;
  const txSize = u.sentPackets ? u.sentBytes / u.sentPackets : 0;
  return {
    ...u,
    bytes: u.bytes + u.packets * overhead,
    sentBytes: u.sentBytes + u.sentPackets * overhead,
    rxPoints: per(u.rxPoints, rxSize),
    txPoints: per(u.txPoints, txSize),
  };
}

async function tcpPhase(
  p: BtestParams,
  conns: Channel[],
  opt: BtestRunOptions,
  raw: BtestRaw,
  emit: (e: BtestEvent) => void,
) {
  const durationNs = p.durationS * 1e9;
  const cpu = cpuMeter();
  const t0 = hr();
  let job: EngineJob;
  if (p.direction === 'receive') {
    job = {
      mode: 'receive',
      framing: { kind: 'raw' },
      sampleNs: 100e6,
      idleTimeoutMs: p.ioTimeoutMs,
      maxDurationMs: p.durationS * 1000,
    };
  } else {
    // send, or both: every connection carries both directions and what arrives is counted as data
    // (§8: in TCP both the status words ride inside the bulk stream, a negligible part of it).
    job = {
      mode: 'send',
      framing: { kind: 'raw' },
      chunks: conns.map((c) => c.chunkSet(0x8000, false)),
      until: { durationNs },
      sampleNs: 100e6,
      idleTimeoutMs: p.ioTimeoutMs,
      ...(p.localTxSpeed ? { rateBps: p.localTxSpeed / conns.length } : {}),
      ...(p.direction === 'both' ? { countInbound: true } : {}),
    };
  }
  const run = opt.engine.run(
    conns,
    job,
    conns.map(() => t0),
  );
  const abort = () => run.abort();
  opt.signal?.addEventListener('abort', abort, { once: true });
  // A transfer by size: the live counters hold what arrived (receive) or what we handed the
  // kernel (send, both), checked every 5 ms; the test then ends as a timed one does, by closing.
  let reachedAt: bigint | undefined;
  const bySize =
    p.bytes &&
    setInterval(() => {
      if (run.counters.reduce((a, b) => a + b, 0) < p.bytes!) return;
      reachedAt = hr();
      clearInterval(bySize as NodeJS.Timeout);
      run.abort();
    }, 5);
  // The receiving side sends a status every second (§8 "TCP test"); the sender reads them at the end.
  let seq = 0;
  let last = 0;
  const tick = setInterval(() => {
    const total = run.counters.reduce((a, b) => a + b, 0);
    seq++;
    const localCpu = cpu.percent();
    if (p.direction === 'receive')
      conns[0]!.writeRaw(encodeStatus({ cpu: localCpu, seq, bytes: total - last }));
    const mbps = ((total - last) * 8) / 1e6;
    const st = raw.serverStatus[raw.serverStatus.length - 1];
    const rxs = p.direction === 'receive';
    emit({
      type: 'second',
      seq,
      rx_mbps: rxs ? mbps : 0,
      // TCP both: the live counters are what this probe sends; what it receives is counted at the end
      tx_mbps: rxs ? 0 : mbps,
      rx_bytes: rxs ? total - last : 0,
      tx_bytes: rxs ? 0 : total - last,
      lost: 0,
      local_cpu: localCpu,
      ...(st ? { remote_cpu: st.cpu } : {}),
    });
    last = total;
  }, 1000);
  try {
    let out = await run.done;
    const bad = out.find((o) => o.error && o.error.code !== 'BP_ERR_ABORTED');
    if (bad?.error) throw ProbeError.fromJSON(bad.error);
    if (opt.signal?.aborted) throw new ProbeError('BP_ERR_ABORTED');
    if (reachedAt !== undefined) {
      // the rate is over the time it took, not the duration that bounded it
      raw.bytesReached = true;
      raw.durationNs = Math.max(1, Math.max(...out.map((o) => o.endNs), Number(reachedAt - t0)));
      // an aborted stream has no final point: its series would end at its last sample
      out = out.map((o) => ({ ...o, points: withEnd(o.points, o.bytes, o.endNs) }));
    }
    if (p.direction === 'receive') raw.rx = out;
    else {
      raw.tx = out;
      if (p.direction === 'both') {
        raw.rx = out.map((o) => ({ points: o.rx?.points ?? [], bytes: o.rx?.bytes ?? 0, endNs: o.endNs }));
      } else {
        // What the server said while we sent is the inbound bytes the engine handed back.
        for (const c of conns) raw.serverStatus.push(...statusesIn(c.takeBuffered()));
      }
    }
  } finally {
    clearInterval(tick);
    if (bySize) clearInterval(bySize);
    opt.signal?.removeEventListener('abort', abort);
  }
}

async function udpPhase(
  p: BtestParams,
  main: Channel,
  family: 4 | 6,
  opt: BtestRunOptions,
  raw: BtestRaw,
  emit: (e: BtestEvent) => void,
) {
  // §7: the server announces its base port (u16 BE); we bind base + 256 and accept any source port.
  let portBytes = await main.readBytes(2, p.ioTimeoutMs);
  // btest-opensource's server sends its MD5 OK word twice (§12 item 6): `01 00` then `00 00` is that
  // second OK, not port 256; the port follows it.
  if (portBytes.readUInt16BE(0) === 0x0100) {
    const next = await main.readBytes(2, p.ioTimeoutMs);
    portBytes = next.readUInt16BE(0) === 0 ? await main.readBytes(2, p.ioTimeoutMs) : next;
  }
  const base = portBytes.readUInt16BE(0);
  // A hostile server could make us bind a privileged port (we may run as root): the base and our
  // base + 256 must both be unprivileged, without the wrap past 65535.
  if (base < 1024 || base + UDP_CLIENT_OFFSET > 0xffff)
    throw new ProbeError(
      'BP_ERR_PROTOCOL',
      `the server announced UDP port ${base}; ports below 1024 or above ${0xffff - UDP_CLIENT_OFFSET} are refused`,
    );
  const sends = p.direction !== 'receive';
  const receives = p.direction !== 'send';
  // Unlimited UDP starts unpaced, as btest-rs does, and then follows 1.5 × what the peer reports (§9).
  // btest-opensource starts at 1 Mbit/s instead and grows ×1.5 a second: 10 s reach only ~58 Mbit/s
  //. The first second's burst is left out of the figure (measure.ts skipRamp).
  const startRate = p.localTxSpeed || 0;
  const run = await opt.engine.udp({
    bindHost: family === 6 ? '::' : '0.0.0.0',
    bindPort: base + UDP_CLIENT_OFFSET,
    peerHost: main.socket.remoteAddress!,
    peerPort: base,
    // unconnected, as NAT in front of a router may rewrite the server's source port (§7), but locked to
    // the first source port that sends a plausible datagram: no other port of the server's address counts
    connect: false,
    lockPort: true,
    family,
    ...(sends
      ? {
          send: {
            payload: udpPayloadFor(p.udpSize, family),
            paceBytes: p.udpSize,
            rateBps: startRate,
            seqStart: 0,
          },
        }
      : {}),
    receive: receives,
    durationNs: p.durationS * 1e9,
    sampleNs: 100e6,
  });
  const abort = () => run.abort();
  opt.signal?.addEventListener('abort', abort, { once: true });
  const cpu = cpuMeter();
  let seq = 0;
  let lastRx = 0;
  let lastTx = 0;
  let lastLost = 0;
  let reading = true;
  // Server statuses arrive on the control connection once a second.
  let controlLost: ProbeError | undefined;
  const reader = (async () => {
    while (reading) {
      const b = await main
        .readBytes(STATUS_SIZE, p.durationS * 1000 + p.ioTimeoutMs)
        .catch((err: ProbeError) => {
          // The control connection ends the test (§10): if it goes before we are done, the server is gone.
          if (reading && err.code === 'BP_ERR_PEER_CLOSED') {
            controlLost = err;
            run.abort();
          }
          return undefined;
        });
      if (!b) return;
      let st: Status;
      try {
        st = decodeStatus(b);
      } catch {
        return; // garbage instead of a status: stop listening, the data phase still ends on time
      }
      raw.serverStatus.push(st);
      if (sends && !p.localTxSpeed && st.bytes > 0) run.setRate(st.bytes * 8 * 1.5);
    }
  })();
  // btest counts UDP in IP packet bytes, like tx_size (§7): payload + 28 (IPv6: 48) per datagram.
  const overhead = family === 6 ? 48 : 28;
  const seconds: NonNullable<BtestRaw['udpSeconds']> = [];
  raw.udpSeconds = seconds;
  const tick = setInterval(() => {
    const [txPayload = 0, rxPayload = 0, packets = 0, lost = 0] = run.counters;
    const rx = rxPayload + packets * overhead;
    const tx = txPayload + (txPayload / udpPayloadFor(p.udpSize, family)) * overhead;
    seq++;
    const localCpu = cpu.percent();
    // Both sides send status every second in UDP mode, each with its own received bytes (§8).
    main.writeRaw(encodeStatus({ cpu: localCpu, seq, bytes: rx - lastRx }));
    const st = raw.serverStatus[raw.serverStatus.length - 1];
    emit({
      type: 'second',
      seq,
      rx_mbps: ((rx - lastRx) * 8) / 1e6,
      tx_mbps: ((tx - lastTx) * 8) / 1e6,
      rx_bytes: Math.round(rx - lastRx),
      tx_bytes: Math.round(tx - lastTx),
      lost: lost - lastLost,
      local_cpu: localCpu,
      ...(st ? { remote_cpu: st.cpu } : {}),
    });
    lastRx = rx;
    lastTx = tx;
    lastLost = lost;
    seconds.push({ packets, lost });
  }, 1000);
  try {
    raw.udp = ipBytes(await run.start(hr()), overhead);
    if (controlLost) throw controlLost;
    if (raw.udp.error) throw ProbeError.fromJSON(raw.udp.error);
    if (opt.signal?.aborted) throw new ProbeError('BP_ERR_ABORTED');
  } finally {
    clearInterval(tick);
    reading = false;
    opt.signal?.removeEventListener('abort', abort);
    main.close();
    await reader;
  }
}
