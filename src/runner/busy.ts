import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { median } from '../measure/stats.js';

/**
 * Is the line busy right before a run? Two things the probe can see:
 * - the byte counters of an interface (/proc/net/dev) over a short window. In an add-on container
 *   without host networking that is only the container's own traffic, so it mostly catches a second
 *   measurement tool in the same container; with host networking (or standalone) it sees the host.
 * - an idle latency probe: TCP connect round trips to the target's server, compared with the lowest
 *   seen before it. Cross traffic on the bottleneck shows up as queueing delay on top of that minimum.
 */
export interface BusySample {
  /** Mbit/s in + out on the sampled interface; undefined when it could not be read */
  traffic_mbps?: number;
  interface?: string;
  /** median TCP connect RTT of a few probes */
  idle_rtt_ms?: number;
}

export interface BusyVerdict extends BusySample {
  busy: boolean;
  reasons: string[];
  /** the rolling minimum the RTT was compared with */
  baseline_rtt_ms?: number;
}

/** The interface of the IPv4 default route (/proc/net/route), else undefined. */
export async function defaultInterface(routeFile = '/proc/net/route'): Promise<string | undefined> {
  try {
    const lines = (await readFile(routeFile, 'utf8')).trim().split('\n').slice(1);
    let best: { dev: string; metric: number } | undefined;
    for (const l of lines) {
      const f = l.trim().split(/\s+/);
      if (f[1] !== '00000000' || f[7] !== '00000000') continue; // destination 0/0
      const metric = Number(f[6]);
      if (!best || metric < best.metric) best = { dev: f[0]!, metric };
    }
    return best?.dev;
  } catch {
    return undefined;
  }
}

/** rx + tx bytes of one interface from /proc/net/dev. */
export async function interfaceBytes(dev: string, file = '/proc/net/dev'): Promise<number | undefined> {
  try {
    for (const l of (await readFile(file, 'utf8')).split('\n')) {
      const m = /^\s*([^:\s]+):\s*(.*)$/.exec(l);
      if (!m || m[1] !== dev) continue;
      const f = m[2]!.trim().split(/\s+/).map(Number);
      return (f[0] ?? 0) + (f[8] ?? 0);
    }
  } catch {
    // no /proc (not Linux): no traffic figure
  }
  return undefined;
}

/** One TCP connect round trip (SYN → SYN/ACK), closed at once; undefined when it failed. */
export function connectRtt(host: string, port: number, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ host, port });
    const done = (v: number | undefined) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    s.once('connect', () => done(Number(process.hrtime.bigint() - t0) / 1e6));
    s.once('error', () => done(undefined));
  });
}

export interface BusyOptions {
  /** sampled interface; default: the default route's */
  interface?: string;
  windowMs: number;
  /** Mbit/s that counts as busy (0: ignore traffic) */
  trafficMbps: number;
  /** extra ms over the baseline that counts as busy (0: ignore latency) */
  rttMs: number;
  /** where the latency probe connects */
  peer?: { host: string; port: number };
  /** lowest idle RTT of this target's recent runs */
  baselineRttMs?: number;
  probes?: number;
}

/** Samples traffic and latency in parallel for `windowMs` and says whether the line looks busy. */
export async function checkBusy(o: BusyOptions): Promise<BusyVerdict> {
  const dev = o.interface ?? (await defaultInterface());
  const traffic = (async (): Promise<number | undefined> => {
    if (!dev || o.trafficMbps <= 0) return undefined;
    const a = await interfaceBytes(dev);
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, o.windowMs));
    const b = await interfaceBytes(dev);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return a === undefined || b === undefined ? undefined : ((b - a) * 8) / 1e6 / s;
  })();
  const rtt = (async (): Promise<number | undefined> => {
    if (!o.peer || o.rttMs <= 0) return undefined;
    const samples: number[] = [];
    const n = o.probes ?? 5;
    for (let i = 0; i < n; i++) {
      const v = await connectRtt(o.peer.host, o.peer.port, Math.max(500, o.windowMs));
      if (v !== undefined) samples.push(v);
      await new Promise((r) => setTimeout(r, o.windowMs / n));
    }
    return samples.length ? median(samples) : undefined;
  })();
  const [traffic_mbps, idle_rtt_ms] = await Promise.all([traffic, rtt]);
  const reasons: string[] = [];
  if (traffic_mbps !== undefined && traffic_mbps >= o.trafficMbps)
    reasons.push(`${traffic_mbps.toFixed(1)} Mbit/s on ${dev} (limit ${o.trafficMbps})`);
  if (idle_rtt_ms !== undefined && o.baselineRttMs !== undefined && idle_rtt_ms - o.baselineRttMs >= o.rttMs)
    reasons.push(
      `idle RTT ${idle_rtt_ms.toFixed(1)} ms is ${(idle_rtt_ms - o.baselineRttMs).toFixed(1)} ms over its minimum ${o.baselineRttMs.toFixed(1)} ms`,
    );
  return {
    busy: reasons.length > 0,
    reasons,
    ...(dev ? { interface: dev } : {}),
    ...(traffic_mbps !== undefined ? { traffic_mbps: Math.round(traffic_mbps * 1000) / 1000 } : {}),
    ...(idle_rtt_ms !== undefined ? { idle_rtt_ms: Math.round(idle_rtt_ms * 1000) / 1000 } : {}),
    ...(o.baselineRttMs !== undefined ? { baseline_rtt_ms: o.baselineRttMs } : {}),
  };
}
