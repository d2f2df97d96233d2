// Opens abusive connections to our servers for the abuse test (test/slow/abuse.test.ts) and reports how
// each ended. Plain JavaScript so it runs with `node` inside a network namespace without a build step.
// argv: JSON {host, rmbtPlain, rmbtHttp, btest, count, durationMs, graceMs, sources?}: keeps `count`
// connections open for durationMs (a closed one is replaced at once), then waits up to graceMs for the
// servers to close the rest. `sources` are local addresses the connections take in turn (several
// abusive hosts, each under the servers' per-address cap, so connections end by the deadline and not
// by eviction). Prints one JSON line: {opened, capped, closedByPeer, stillOpen, maxCloseMs, kinds};
// `capped` is true when the bound on connections in all (50 × count) ended the replacing early.
import net from 'node:net';

const o = JSON.parse(process.argv[2]);
const kinds = [
  // RMBT plain: silence; garbage without a newline; half a TOKEN line
  { port: o.rmbtPlain, name: 'rmbt-silent', send: [] },
  { port: o.rmbtPlain, name: 'rmbt-garbage', send: [Buffer.from('\x00\xffGARBAGE-without-newline')] },
  { port: o.rmbtPlain, name: 'rmbt-half-token', send: [Buffer.from('TOKEN 1234-abcd')] },
  // RMBT HTTP upgrade: half a request head; garbage
  { port: o.rmbtHttp, name: 'http-half-head', send: [Buffer.from('GET /rmbt HTTP/1.1\r\nHost: x\r\n')] },
  { port: o.rmbtHttp, name: 'http-silent', send: [] },
  // btest: silence; a valid TCP command then nothing (stuck in authentication); 5 bytes of a command
  { port: o.btest, name: 'btest-silent', send: [] },
  {
    port: o.btest,
    name: 'btest-stuck-in-auth',
    send: [Buffer.from([1, 2, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])],
    afterHello: true,
  },
  { port: o.btest, name: 'btest-half-command', send: [Buffer.from([1, 2, 0, 0, 0])], afterHello: true },
];

const t0 = Date.now();
const results = [];
let open = 0;
let stopping = false;
let capped = false;
let wake = () => {};
let n = 0;
function openOne() {
  const k = kinds[n++ % kinds.length];
  const sources = o.sources ?? [];
  const localAddress = sources.length ? sources[Math.floor(n / kinds.length) % sources.length] : undefined;
  const sock = net.connect({ port: k.port, host: o.host, localAddress });
  const r = { kind: k.name, openedAt: 0, closeMs: -1 };
  results.push(r);
  open++;
  sock.on('connect', () => {
    r.openedAt = Date.now();
    if (!k.afterHello) for (const b of k.send) sock.write(b);
  });
  let hello = false;
  sock.on('data', () => {
    if (k.afterHello && !hello) {
      hello = true;
      for (const b of k.send) sock.write(b);
    }
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    r.closeMs = Date.now() - (r.openedAt || t0);
    open--;
    // A bounded loop: replacements only until durationMs, and never more than 50 × count in all.
    if (!stopping && results.length < o.count * 50) openOne();
    else if (!stopping) capped = true;
    if (stopping && open === 0) wake();
  });
}
for (let i = 0; i < o.count; i++) openOne();
await new Promise((r) => setTimeout(r, o.durationMs));
stopping = true;
if (open > 0) {
  await new Promise((r) => {
    wake = r;
    setTimeout(r, o.graceMs);
  });
}
const byKind = {};
for (const r of results) {
  byKind[r.kind] ??= { n: 0, closed: 0, maxCloseMs: 0 };
  const k = byKind[r.kind];
  k.n++;
  if (r.closeMs >= 0) {
    k.closed++;
    k.maxCloseMs = Math.max(k.maxCloseMs, r.closeMs);
  }
}
process.stdout.write(
  `${JSON.stringify({
    opened: results.length,
    capped,
    closedByPeer: results.filter((r) => r.closeMs >= 0).length,
    stillOpen: results.filter((r) => r.closeMs < 0).length,
    maxCloseMs: Math.max(...results.map((r) => r.closeMs)),
    kinds: byKind,
  })}\n`,
);
process.exit(0);
