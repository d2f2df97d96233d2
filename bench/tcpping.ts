/**
 * The reference for the accuracy bench's ping check: the smallest TCP round trip two Node processes can
 * do (one byte out, one byte back) through the same delaying relay, so what the host adds (process
 * wake-ups, loopback) shows up in the reference too. `node tcpping.js echo <host> <port>` prints
 * `READY <port>`; `node tcpping.js ping <host> <port> <count> [gap ms] [for s]` prints `{"median_ms":…,"min_ms":…}`.
 */
import net from 'node:net';

const [mode, host = '127.0.0.1', portArg = '0', countArg = '20', gapArg = '20', forSArg = '0'] =
  process.argv.slice(2);

if (mode === 'echo') {
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on('data', (d) => s.write(d));
    s.on('error', () => s.destroy());
  });
  server.listen(Number(portArg), host, () => {
    const a = server.address();
    process.stdout.write(`READY ${typeof a === 'object' && a ? a.port : 0}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
} else if (mode === 'ping') {
  const s = net.connect({ host, port: Number(portArg) });
  s.setNoDelay(true);
  s.on('error', (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });
  s.once('connect', async () => {
    const rtts: number[] = [];
    /** [epoch ms when sent, round trip ms]: the bench files them under the phase they fell in */
    const samples: [number, number][] = [];
    // paced from the start of each ping (gap ms), one outstanding at most, as the probe's own PINGs
    const gap = Number(gapArg);
    // SIGTERM ends the pinging early and still reports (the bench stops it when its load ends)
    let reported = false;
    const report = () => {
      if (reported) return;
      reported = true;
      rtts.sort((a, b) => a - b);
      const mid = rtts.length >> 1;
      const median = rtts.length % 2 ? rtts[mid]! : (rtts[mid - 1]! + rtts[mid]!) / 2;
      process.stdout.write(
        `${JSON.stringify({ median_ms: median, min_ms: rtts[0], count: rtts.length, samples })}\n`,
      );
    };
    process.on('SIGTERM', () => {
      report();
      process.exit(0);
    });
    // and for at most forS seconds when given (a reference that runs as long as a load does)
    const until = Number(forSArg) > 0 ? Date.now() + Number(forSArg) * 1000 : Number.POSITIVE_INFINITY;
    for (let i = 0; i < Number(countArg) && Date.now() < until; i++) {
      const t = process.hrtime.bigint();
      s.write('p');
      await new Promise((r) => s.once('data', r));
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      rtts.push(ms);
      samples.push([Date.now() - ms, Math.round(ms * 1000) / 1000]);
      await new Promise((r) => setTimeout(r, Math.max(0, gap - ms)));
    }
    report();
    s.destroy();
  });
} else {
  process.stderr.write('usage: tcpping.js echo|ping host port [count]\n');
  process.exit(2);
}
