import net from 'node:net';
import { ProbeError, toProbeError } from '../errors.js';
import type { LatencySample } from '../measure/latency.js';

/**
 * Latency probes beside a measurement: a TCP connect round trip, and a pacer that runs any
 * probe at a steady interval, never two at once, until it is stopped.
 */

export interface ConnectProbeOptions {
  host: string;
  port: number;
  localAddress?: string;
  family?: 0 | 4 | 6;
  timeoutMs: number;
}

const hr = () => process.hrtime.bigint();

/**
 * One TCP connect, timed from connect() to the `connect` event (SYN → SYN-ACK, plus the event loop's
 * own delay), then closed at once without a byte sent: a server sees a connection that ends before
 * its greeting or handshake, which btest servers, RouterOS and both RMBT servers shrug off.
 */
export function connectRtt(o: ConnectProbeOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = hr();
    const sock = net.connect({
      host: o.host,
      port: o.port,
      ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      ...(o.family ? { family: o.family } : {}),
    });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ProbeError('BP_ERR_TIMEOUT', `a TCP connect took longer than ${o.timeoutMs} ms`));
    }, o.timeoutMs);
    sock.once('connect', () => {
      const ms = Number(hr() - t0) / 1e6;
      clearTimeout(timer);
      sock.destroy();
      resolve(ms);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      sock.destroy();
      reject(toProbeError(err, 'BP_ERR_CONNECT'));
    });
  });
}

export interface ProbeOutcome {
  samples: LatencySample[];
  /** payload bytes the probes reported moving */
  bytes: number;
  /** why probing stopped before it was asked to (the probes after it were not sent) */
  error?: string;
  /** a probe was still under way when the grace ran out: its connection is in an unknown state */
  pending: boolean;
  /**
   * median time a ready callback waited for this process's event loop while the probes ran (ms): what
   * our own loop added to each round trip, large when the js engine moves the bulk bytes at high speed
   */
  loop_delay_ms?: number;
  /** when the pacer started (epoch ms): the samples' t_ms count from here */
  started_ms: number;
}

export interface Pacer {
  /** settles when the probes end by themselves (maxSamples reached, or the first failure) */
  finished: Promise<void>;
  stop(graceMs?: number): Promise<ProbeOutcome>;
}

export interface PaceOptions {
  intervalMs: number;
  /** wait this long before the first probe */
  firstDelayMs?: number;
  /** stop after this many probes (a bound on any load loop) */
  maxSamples: number;
}

/**
 * Runs `probe` every `intervalMs` from the start of the previous one, or right after it when it took
 * longer (one outstanding at most). The first failure ends probing: its message is the outcome's
 * error, and the samples before it stand.
 */
export function pace(probe: () => Promise<{ ms: number; bytes?: number }>, o: PaceOptions): Pacer {
  const t0 = hr();
  const out: ProbeOutcome = { samples: [], bytes: 0, pending: false, started_ms: Date.now() };
  const lag = loopLag();
  let stopped = false;
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopped || ms <= 0) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  const loop = (async () => {
    await sleep(o.firstDelayMs ?? 0);
    while (!stopped && out.samples.length < o.maxSamples) {
      const start = hr();
      try {
        const r = await probe();
        out.samples.push({ t_ms: Number(start - t0) / 1e6, ms: r.ms });
        out.bytes += r.bytes ?? 0;
      } catch (err) {
        if (!stopped) out.error = toProbeError(err).message;
        return;
      }
      await sleep(o.intervalMs - Number(hr() - start) / 1e6);
    }
  })();
  return {
    finished: loop,
    async stop(graceMs = 2000) {
      stopped = true;
      wake?.();
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        loop.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), graceMs);
        }),
      ]);
      clearTimeout(timer);
      out.pending = late;
      const delay = lag.stop();
      return {
        ...out,
        samples: [...out.samples],
        ...(delay !== undefined ? { loop_delay_ms: delay } : {}),
      };
    },
  };
}

/** How often loopLag samples, and the most samples it keeps (a bound for a stuck stop). */
const LAG_EVERY_MS = 20;
const LAG_MAX = 5000;

/**
 * The event loop's own delay: every LAG_EVERY_MS a setImmediate is queued and the time until it runs is
 * noted, which is about how long a socket's ready data waits for this process. Node's
 * monitorEventLoopDelay reports whole timer intervals, which hides delays shorter than its resolution.
 */
export function loopLag(): { stop(): number | undefined } {
  const lags: number[] = [];
  let stopped = false;
  const tick = () => {
    if (stopped || lags.length >= LAG_MAX) return;
    const t = hr();
    setImmediate(() => {
      lags.push(Number(hr() - t) / 1e6);
      timer = setTimeout(tick, LAG_EVERY_MS);
    });
  };
  let timer: NodeJS.Timeout | undefined = setTimeout(tick, LAG_EVERY_MS);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (!lags.length) return undefined;
      const s = lags.sort((a, b) => a - b);
      return Math.round(s[s.length >> 1]! * 1000) / 1000;
    },
  };
}
