// A misbehaving front for our real servers, for the fault soak (test/slow/soak.test.ts). Each accepted
// connection gets one behaviour, drawn at random: pass (a clean relay), refuse (reset at once), stall
// (accept, then silence), cut (relay, then drop both sides mid-phase), garbage (random bytes instead of
// the server's), slow (relay with a delay on every chunk). Plain JavaScript, run with `node`.
// argv: JSON {routes: [{target: port}], seed?, only?: mode}; prints `READY <port> <port> …`; SIGUSR2 prints the tally.
import net from 'node:net';

const o = JSON.parse(process.argv[2]);
let seed = o.seed ?? 12345;
// A small deterministic PRNG (mulberry32), so a failing soak can be replayed with its seed.
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const MODES = [
  ['pass', 0.55],
  ['refuse', 0.09],
  ['stall', 0.09],
  ['cut', 0.09],
  ['garbage', 0.09],
  ['slow', 0.09],
];
const tally = Object.fromEntries(MODES.map(([m]) => [m, 0]));
function pick() {
  if (o.only) return o.only;
  let x = rand();
  for (const [m, p] of MODES) {
    if (x < p) return m;
    x -= p;
  }
  return 'pass';
}

function relay(client, port, mode) {
  const up = net.connect(port, '127.0.0.1');
  const kill = () => {
    client.destroy();
    up.destroy();
  };
  client.on('error', kill);
  up.on('error', kill);
  client.on('close', () => up.destroy());
  up.on('close', () => client.destroy());
  if (mode === 'cut') {
    // Drop both sides after a random amount of traffic, somewhere in the handshake or a phase.
    let budget = Math.floor(rand() * 400_000) + 20;
    const count = (d) => {
      budget -= d.length;
      if (budget <= 0) kill();
    };
    client.on('data', count);
    up.on('data', count);
  }
  if (mode === 'slow') {
    // Every chunk waits 30–120 ms in each direction: phases crawl, handshakes still finish.
    const delayed = (from, to) => {
      from.on('data', (d) => {
        from.pause();
        setTimeout(
          () => {
            if (!to.destroyed) to.write(d);
            from.resume();
          },
          30 + rand() * 90,
        );
      });
    };
    delayed(client, up);
    delayed(up, client);
    return;
  }
  client.pipe(up);
  up.pipe(client);
}

const servers = [];
for (const r of o.routes) {
  const server = net.createServer((client) => {
    const mode = pick();
    tally[mode]++;
    client.on('error', () => {});
    switch (mode) {
      case 'refuse':
        client.resetAndDestroy();
        return;
      case 'stall':
        client.resume(); // read and ignore; the client's I/O timeout ends it
        return;
      case 'garbage': {
        client.resume();
        const junk = Buffer.alloc(200 + Math.floor(rand() * 4000));
        for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(rand() * 256);
        client.write(junk);
        setTimeout(() => client.destroy(), 200 + rand() * 800);
        return;
      }
      default:
        relay(client, r.target, mode);
    }
  });
  servers.push(new Promise((res) => server.listen(0, '127.0.0.1', () => res(server.address().port))));
}
const ports = await Promise.all(servers);
process.stdout.write(`READY ${ports.join(' ')}\n`);
process.on('SIGUSR2', () => process.stdout.write(`TALLY ${JSON.stringify(tally)}\n`));
process.on('SIGTERM', () => process.exit(0));
