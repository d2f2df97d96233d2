import { ProbeError } from '../errors.js';
import type { Point } from '../measure/speed.js';
import { jsUdp } from './jsUdp.js';
import type {
  DataStream,
  Engine,
  EngineJob,
  EngineRun,
  ReceiveJob,
  SendJob,
  StreamOutcome,
  UdpJob,
  UdpRunHandle,
} from './types.js';

const now = () => process.hrtime.bigint();

/** Writes per event-loop turn before yielding, so timers and inbound lines still get their turn. */
const WRITES_PER_TURN = 32;

/**
 * The JavaScript engine: the reference implementation of the engine contract and the fallback when the
 * native loop cannot load. Bulk bytes pass through the event loop here, which is exactly what the native
 * engine avoids; the shapes of its results are identical.
 */
export class JsEngine implements Engine {
  readonly kind = 'js' as const;

  udp(job: UdpJob): Promise<UdpRunHandle> {
    return jsUdp(job);
  }

  run(streams: readonly DataStream[], job: EngineJob, t0?: readonly bigint[]): EngineRun {
    const counters = new Float64Array(streams.length);
    const ctrls = streams.map((s, i) => {
      const start = t0?.[i] ?? now();
      return job.mode === 'receive' ? receive(s, job, start, counters, i) : send(s, job, start, counters, i);
    });
    return {
      kind: 'js',
      counters,
      abort: () => {
        for (const c of ctrls) c.abort();
      },
      done: Promise.all(ctrls.map((c) => c.done)),
    };
  }
}

interface StreamCtrl {
  abort(): void;
  done: Promise<StreamOutcome>;
}

/** Shared bookkeeping for one stream: points, counters, timers, a single settle. */
function tracker(stream: DataStream, t0: bigint, sampleNs: number, counters: Float64Array, idx: number) {
  const points: Point[] = [];
  let bytes = 0;
  let lastSample = -Infinity;
  let settled = false;
  let lastNs = 0;
  let resolve!: (o: StreamOutcome) => void;
  const done = new Promise<StreamOutcome>((r) => {
    resolve = r;
  });
  const timers: NodeJS.Timeout[] = [];
  const slots: Partial<Record<'pace' | 'drain', NodeJS.Timeout>> = {};
  return {
    done,
    /** more outcome fields, read when the stream finishes (send with countInbound: rx) */
    extra: undefined as (() => Partial<StreamOutcome>) | undefined,
    get bytes() {
      return bytes;
    },
    get settled() {
      return settled;
    },
    add(n: number, at: bigint, force = false) {
      bytes += n;
      counters[idx] = bytes;
      const t = Number(at - t0);
      if (n > 0) lastNs = t;
      if (force || t - lastSample >= sampleNs) {
        points.push({ t, b: bytes });
        lastSample = t;
      }
    },
    /** A timer cleared when the stream finishes; one with a `slot` replaces that slot's previous timer. */
    timer(ms: number, fn: () => void, slot?: 'pace' | 'drain') {
      const tm = setTimeout(fn, ms);
      tm.unref?.();
      if (slot) {
        clearTimeout(slots[slot]);
        slots[slot] = tm;
      } else {
        timers.push(tm);
      }
      return tm;
    },
    finish(leftover?: Buffer, error?: ProbeError) {
      if (settled) return;
      settled = true;
      for (const tm of [...timers, ...Object.values(slots)]) clearTimeout(tm);
      const endNs = Number(now() - t0);
      const last = points[points.length - 1];
      if (!error && bytes > 0 && (!last || last.b !== bytes)) points.push({ t: endNs, b: bytes });
      stream.detach(leftover);
      resolve({
        points,
        bytes,
        endNs,
        ...(bytes > 0 ? { lastNs } : {}),
        ...(error ? { error: error.toJSON() } : {}),
        ...this.extra?.(),
      });
    },
  };
}

function receive(
  stream: DataStream,
  job: ReceiveJob,
  t0: bigint,
  counters: Float64Array,
  idx: number,
): StreamCtrl {
  const tr = tracker(stream, t0, job.sampleNs, counters, idx);
  const cs = job.framing.kind === 'chunks' ? job.framing.chunkSize : 0;
  let pos = 0; // bytes into the current chunk
  let lastReport = -1n;
  let lastData = now();
  const idleNs = BigInt(job.idleTimeoutMs) * 1_000_000n;

  const idleCheck = () => {
    if (tr.settled) return;
    const quiet = now() - lastData;
    if (quiet >= idleNs)
      tr.finish(undefined, new ProbeError('BP_ERR_STALLED', `no data for ${job.idleTimeoutMs} ms`));
    else tr.timer(Number((idleNs - quiet) / 1_000_000n) + 1, idleCheck);
  };
  tr.timer(job.idleTimeoutMs, idleCheck);
  // Raw streams (btest) have no last chunk: their deadline is the normal end.
  tr.timer(job.maxDurationMs, () =>
    tr.finish(
      undefined,
      cs === 0
        ? undefined
        : new ProbeError('BP_ERR_TIMEOUT', `the last chunk did not come within ${job.maxDurationMs} ms`),
    ),
  );

  stream.attach({
    data(buf) {
      if (tr.settled) return;
      const at = now();
      lastData = at;
      if (cs === 0) {
        tr.add(buf.length, at);
        return;
      }
      // Only the byte at each chunk boundary is looked at (specs/rmbt.md §3.3): count, never scan.
      let off = 0;
      while (off < buf.length) {
        const need = cs - pos;
        if (buf.length - off < need) {
          pos += buf.length - off;
          tr.add(buf.length - off, at);
          break;
        }
        off += need;
        pos = 0;
        if (buf[off - 1] === 0xff) {
          tr.add(need, at, true);
          report(at, true);
          tr.finish(off < buf.length ? Buffer.from(buf.subarray(off)) : undefined);
          return;
        }
        tr.add(need, at);
      }
      report(at, false);
    },
    end(err) {
      tr.finish(undefined, err);
    },
  });

  // RMBTD sends a report if none was sent yet or more than the interval passed (§3.2 PUT); the final
  // `TIME <ns>` line is the protocol's business, not the engine's.
  function report(at: bigint, last: boolean) {
    if (!job.report || last) return;
    if (lastReport < 0n || Number(at - lastReport) > job.report.intervalNs) {
      lastReport = at;
      stream.writeLine(`TIME ${at - t0} BYTES ${tr.bytes}`);
    }
  }

  return {
    abort: () => tr.finish(undefined, new ProbeError('BP_ERR_ABORTED')),
    done: tr.done,
  };
}

function send(stream: DataStream, job: SendJob, t0: bigint, counters: Float64Array, idx: number): StreamCtrl {
  const tr = tracker(stream, t0, job.sampleNs, counters, idx);
  let set = job.chunks[idx] ?? job.chunks[0]!;
  let payload = 0;
  let nextSet = 0;
  const inbound: Buffer[] = [];
  let sent = 0;
  let v = 0;
  let drainTimer: NodeJS.Timeout | undefined;

  // Whatever the peer says meanwhile (RMBT PUT feedback lines) is handed back to the protocol reader;
  // with countInbound it is data (btest TCP both), counted and dropped.
  let rxBytes = 0;
  const rxPoints: Point[] = [];
  if (job.countInbound) {
    tr.extra = () => {
      const t = Number(now() - t0);
      if (rxPoints[rxPoints.length - 1]?.b !== rxBytes) rxPoints.push({ t, b: rxBytes });
      return { rx: { bytes: rxBytes, points: rxPoints } };
    };
  }
  stream.attach({
    data(buf) {
      if (!job.countInbound) {
        inbound.push(Buffer.from(buf));
        return;
      }
      rxBytes += buf.length;
      const t = Number(now() - t0);
      const last = rxPoints[rxPoints.length - 1];
      if (!last || t - last.t >= job.sampleNs) rxPoints.push({ t, b: rxBytes });
    },
    end(err) {
      tr.finish(Buffer.concat(inbound), err);
    },
  });

  const isLast = (): boolean =>
    'durationNs' in job.until ? Number(now() - t0) >= job.until.durationNs : sent + 1 >= job.until.count;

  const pump = (): void => {
    if (drainTimer) clearTimeout(drainTimer);
    for (let i = 0; i < WRITES_PER_TURN; i++) {
      if (tr.settled) return;
      const last = isLast();
      if (job.rateBps && !last) {
        // chunk n is due at t0 + n·size·8/rate (absolute deadlines, as in the native loop)
        const wait = (payload * 8e9) / job.rateBps - Number(now() - t0);
        if (wait > 0) {
          tr.timer(Math.max(1, Math.ceil(wait / 1e6)), pump, 'pace');
          return;
        }
      }
      const ok = stream.write(last ? set.fin : set.cont[v++ % set.cont.length]!);
      sent++;
      payload += set.size;
      tr.add(set.size, now(), last);
      const grow = job.scale?.sets[nextSet];
      if (grow && grow.size * job.scale!.divisor <= payload) {
        set = grow;
        nextSet++;
      }
      if (last) {
        tr.finish(Buffer.concat(inbound));
        return;
      }
      if (!ok) {
        stream.onceDrain(pump);
        drainTimer = tr.timer(
          job.idleTimeoutMs,
          () =>
            tr.finish(
              Buffer.concat(inbound),
              new ProbeError('BP_ERR_STALLED', `the peer took nothing for ${job.idleTimeoutMs} ms`),
            ),
          'drain',
        );
        return;
      }
    }
    setImmediate(pump);
  };
  setImmediate(pump);

  return {
    abort: () => tr.finish(Buffer.concat(inbound), new ProbeError('BP_ERR_ABORTED')),
    done: tr.done,
  };
}
