import dgram from 'node:dgram';
import { ProbeError, toProbeError } from '../errors.js';
import { Rfc3550Jitter, SeqTracker } from '../measure/seq.js';
import type { Point } from '../measure/speed.js';
import type { UdpJob, UdpOutcome, UdpRunHandle } from './types.js';

const now = () => process.hrtime.bigint();
const BATCH = 32;

/** The job's socket, bound (and connected, where the job says so), with large kernel buffers. */
async function openSocket(job: UdpJob): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: job.family === 6 ? 'udp6' : 'udp4', reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', (err) =>
      reject(new ProbeError('BP_ERR_CONNECT', `bind ${job.bindHost}:${job.bindPort}: ${err.message}`)),
    );
    sock.bind(job.bindPort, job.bindHost, () => resolve());
  });
  if (job.connect) {
    await new Promise<void>((resolve, reject) => {
      sock.connect(job.peerPort, job.peerHost, (err?: Error) =>
        err ? reject(toProbeError(err, 'BP_ERR_CONNECT')) : resolve(),
      );
    });
  }
  try {
    sock.setRecvBufferSize(4 * 1024 * 1024);
    sock.setSendBufferSize(4 * 1024 * 1024);
  } catch {
    // limits of the host; the defaults still work
  }
  return sock;
}

/**
 * UDP on Node's dgram sockets: the reference and fallback for the native paced loop. Pacing uses the same
 * absolute deadlines, but timers on the event loop cannot hold high rates; the native loop is the one
 * that meets them.
 */
export async function jsUdp(job: UdpJob): Promise<UdpRunHandle> {
  const sock = await openSocket(job);
  const counters = new Float64Array(5);
  counters[4] = job.send?.rateBps ?? 0;
  let stop: (() => void) | undefined;
  let aborted = false;
  return {
    kind: 'js',
    port: sock.address().port,
    counters,
    setRate(bps) {
      counters[4] = bps;
    },
    abort() {
      aborted = true;
      stop?.();
    },
    start(t0 = now()) {
      return new Promise<UdpOutcome>((resolve) => {
        const seq = new SeqTracker();
        const jit = new Rfc3550Jitter();
        const rxPoints: Point[] = [];
        const txPoints: Point[] = [];
        let rxBytes = 0;
        let txBytes = 0;
        let txPackets = 0;
        let foreign = 0;
        let lockedPort: number | undefined;
        let prevArrival = 0;
        const iats: number[] = [];
        let error: ProbeError | undefined;
        const ts = job.send?.tsOffset;
        sock.on('message', (msg, rinfo) => {
          if (!job.receive) return;
          if (!job.connect && rinfo.address !== job.peerHost) {
            foreign++;
            return;
          }
          if (!job.connect && job.lockPort && lockedPort !== undefined && rinfo.port !== lockedPort) {
            foreign++;
            return;
          }
          if (msg.length < 4) return;
          const at = now();
          if (!seq.push(msg.readUInt32BE(0), Number(at))) {
            foreign++;
            return;
          }
          lockedPort ??= rinfo.port;
          rxBytes += msg.length;
          if (ts !== undefined && msg.length >= ts + 8) jit.push(Number(at - msg.readBigUInt64BE(ts)));
          const a = Number(at);
          if (prevArrival) iats.push(a - prevArrival);
          prevArrival = a;
          counters[1] = rxBytes;
          counters[2] = seq.packets;
          counters[3] = seq.lost;
          const t = Number(at - t0);
          const last = rxPoints[rxPoints.length - 1];
          if (!last || t - last.t >= job.sampleNs) rxPoints.push({ t, b: rxBytes });
        });
        sock.on('error', (err) => {
          if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED')
            error ??= toProbeError(err, 'BP_ERR_ENGINE');
        });
        const s = job.send;
        let finished = false;
        let n = 0;
        let timer: NodeJS.Timeout | undefined;
        const buf = s ? Buffer.alloc(Math.max(s.payload, 4 + (ts !== undefined ? 12 : 0))) : undefined;
        // Same schedule as the native loop: absolute deadlines, restarted from now when the rate changes.
        let rate = counters[4]!;
        let interval = rate ? (s!.paceBytes * 8e9) / rate : 0;
        let baseT = 0;
        let baseN = 0;
        const pump = () => {
          if (!s || !buf || aborted || finished) return;
          const elapsed = Number(now() - t0);
          if (elapsed >= job.durationNs) return;
          if (counters[4] !== rate) {
            rate = counters[4]!;
            interval = rate ? (s.paceBytes * 8e9) / rate : 0;
            baseT = elapsed;
            baseN = n;
          }
          const due = interval
            ? Math.min(BATCH, Math.floor((elapsed - baseT) / interval) + 1 - (n - baseN))
            : BATCH;
          for (let i = 0; i < due; i++) {
            // A fresh buffer per datagram: when dgram has to queue a send it keeps a reference to the
            // buffer (no copy), so reusing one would let later sequence numbers overwrite queued packets.
            const pkt = Buffer.from(buf);
            pkt.writeUInt32BE((s.seqStart + n) >>> 0, 0);
            if (ts !== undefined) pkt.writeBigUInt64BE(now(), ts);
            if (job.connect) sock.send(pkt);
            else sock.send(pkt, job.peerPort, job.peerHost);
            n++;
            txPackets++;
            txBytes += buf.length;
          }
          counters[0] = txBytes;
          const t = Number(now() - t0);
          const last = txPoints[txPoints.length - 1];
          if (!last || t - last.t >= job.sampleNs) txPoints.push({ t, b: txBytes });
          const next = interval ? Math.max(0, (baseT + (n - baseN) * interval - elapsed) / 1e6) : 0;
          timer =
            next >= 1
              ? setTimeout(pump, Math.floor(next))
              : (setImmediate(pump) as unknown as NodeJS.Timeout);
        };
        const finish = () => {
          if (finished) return;
          finished = true;
          if (timer) clearTimeout(timer);
          clearTimeout(end);
          const t = Number(now() - t0);
          txPoints.push({ t, b: txBytes });
          rxPoints.push({ t, b: rxBytes });
          sock.close();
          const mean = iats.length ? iats.reduce((a, b) => a + b, 0) / iats.length : 0;
          resolve({
            sentPackets: txPackets,
            sentBytes: txBytes,
            packets: seq.packets,
            bytes: rxBytes,
            lost: seq.lost,
            duplicates: seq.duplicates,
            reordered: seq.reordered,
            foreign,
            jitterMs: jit.jitter / 1e6,
            iatJitterMs: iats.length
              ? iats.reduce((a, v) => a + Math.abs(v - mean), 0) / iats.length / 1e6
              : 0,
            kernelTimestamps: false,
            txPoints,
            rxPoints,
            ...(error ? { error: error.toJSON() } : {}),
          });
        };
        const end = setTimeout(finish, Math.max(0, (job.durationNs - Number(now() - t0)) / 1e6));
        stop = finish;
        if (aborted) finish();
        else pump();
      });
    },
  };
}
