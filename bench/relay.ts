/**
 * A TCP relay that holds every chunk for a fixed time in each direction: the user-space stand-in for
 * netem's delay, which this kernel lacks. `node relay.js <listenHost> <listenPort> <targetHost>
 * <targetPort> <delayMs>`; prints `READY <port>` once it listens.
 *
 * Precision matters more than throughput here (the accuracy bench checks ping medians to 0.5 ms). While
 * a connection is open the relay never sleeps: it spins on setImmediate, so libuv polls with a zero
 * timeout and a chunk is picked up as it arrives and leaves within tens of microseconds of its deadline.
 * (Sleeping in epoll costs 0.2–0.6 ms per wake-up on this VM, twice per round trip — an artefact a
 * kernel delay line would not have.) Deadlines are absolute, per direction and in arrival order, so
 * delay does not accumulate. One core busy for the few seconds a ping check lasts.
 */
import net from 'node:net';

const [
  listenHost = '127.0.0.1',
  listenPort = '0',
  targetHost = '127.0.0.1',
  targetPort = '0',
  delayArg = '0',
] = process.argv.slice(2);
const delayNs = BigInt(Math.round(Number(delayArg) * 1e6));

class DelayedPipe {
  private queue: { due: bigint; data: Buffer }[] = [];
  private armed = false;
  private ended = false;

  constructor(
    from: net.Socket,
    private readonly to: net.Socket,
  ) {
    from.on('data', (data: Buffer) => {
      this.queue.push({ due: process.hrtime.bigint() + delayNs, data });
      this.arm();
    });
    from.on('end', () => {
      this.ended = true;
      this.arm();
    });
  }

  private arm(): void {
    if (this.armed) return;
    this.armed = true;
    setImmediate(() => this.pump());
  }

  private pump(): void {
    this.armed = false;
    const now = process.hrtime.bigint();
    while (this.queue.length > 0 && this.queue[0]!.due <= now) {
      this.to.write(this.queue.shift()!.data);
    }
    if (this.queue.length === 0) {
      if (this.ended) this.to.end();
      return;
    }
    this.armed = true;
    setImmediate(() => this.pump());
  }
}

// Keeps the loop polling (never blocking in epoll) while any connection is open.
let open = 0;
function spin(): void {
  if (open > 0) setImmediate(spin);
}

const server = net.createServer((client) => {
  if (open++ === 0) spin();
  client.once('close', () => open--);
  client.setNoDelay(true);
  const upstream = net.connect({ host: targetHost, port: Number(targetPort) });
  upstream.setNoDelay(true);
  new DelayedPipe(client, upstream);
  new DelayedPipe(upstream, client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', () => upstream.end());
  upstream.on('close', () => client.end());
});
server.listen(Number(listenPort), listenHost, () => {
  const a = server.address();
  process.stdout.write(`READY ${typeof a === 'object' && a ? a.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
