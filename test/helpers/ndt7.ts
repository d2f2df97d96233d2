import { createServer, type Server } from 'node:http';
import net from 'node:net';
import { SUBPROTOCOL } from '../../src/ndt7/messages.js';
import { Channel } from '../../src/net/channel.js';
import {
  encodeFrame,
  frameHeader,
  OP_BINARY,
  OP_CLOSE,
  OP_CONT,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  WsDecoder,
  wsAccept,
} from '../../src/net/ws.js';

/**
 * Peers for the ndt7 client's tests: a Locate v2 stand-in and scripted ndt7 servers that misbehave the
 * ways real ones do (no close and no measurements, as ndt7-server-go-minimal; a reset before the end;
 * oversized text; impossible TCPInfo; data in the wrong direction). Loopback, port 0, bounded in time.
 */

export interface LocateStandIn {
  url: string;
  requests: { url: string; ua: string | undefined }[];
  close(): Promise<void>;
}

/** Answers each GET with `answer(n)` (n counts from 0): a status and a body. */
export async function locateStandIn(
  answer: (n: number) => { status: number; body?: string },
): Promise<LocateStandIn> {
  const requests: LocateStandIn['requests'] = [];
  const srv: Server = createServer((req, res) => {
    const a = answer(requests.length);
    requests.push({ url: req.url ?? '', ua: req.headers['user-agent'] });
    res.writeHead(a.status, { 'content-type': 'application/json' });
    res.end(a.status === 204 ? undefined : a.body);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v2/nearest/ndt/ndt7`,
    requests,
    close: () => new Promise((r) => srv.close(() => r())),
  };
}

/** A Locate v2 answer listing servers at these host:ports (ws URLs with an access token each). */
export function locateBody(servers: { hostPort: string; machine: string; token?: string }[]): string {
  return JSON.stringify({
    results: servers.map((s) => ({
      machine: s.machine,
      location: { city: 'Loopback', country: 'ZZ' },
      urls: {
        'ws:///ndt/v7/download': `ws://${s.hostPort}/ndt/v7/download?access_token=${s.token ?? 'tok'}&client_name=x`,
        'ws:///ndt/v7/upload': `ws://${s.hostPort}/ndt/v7/upload?access_token=${s.token ?? 'tok'}&client_name=x`,
        'wss:///ndt/v7/download': `wss://${s.hostPort}/ndt/v7/download?access_token=${s.token ?? 'tok'}`,
        'wss:///ndt/v7/upload': `wss://${s.hostPort}/ndt/v7/upload?access_token=${s.token ?? 'tok'}`,
      },
    })),
  });
}

export interface Script {
  /** the upgrade's answer: 101 with the subprotocol (default), 101 without it, or an HTTP status */
  upgrade?: 'ok' | 'no-subprotocol' | number;
  /** what the server does once upgraded, for `download` or `upload`; resolves when it is done */
  run?(ch: Channel, test: 'download' | 'upload', sock: net.Socket): Promise<void>;
}

export interface ScriptedServer {
  port: number;
  /** request lines seen */
  seen: string[];
  close(): Promise<void>;
}

export async function scriptedNdt7(script: Script): Promise<ScriptedServer> {
  const seen: string[] = [];
  const conns = new Set<Channel>();
  const srv = net.createServer(async (sock) => {
    sock.on('error', () => {});
    const ch = new Channel(sock);
    conns.add(ch);
    try {
      const head = await ch.readHttpHead(5000);
      const line = head.split('\r\n')[0]!;
      seen.push(line);
      const test = line.includes('/upload') ? 'upload' : 'download';
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)?.[1] ?? '';
      const up = script.upgrade ?? 'ok';
      if (typeof up === 'number') {
        ch.writeRaw(Buffer.from(`HTTP/1.1 ${up} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`));
        sock.end();
        return;
      }
      ch.writeRaw(Buffer.from(upgradeAnswer(key, up === 'ok')));
      // an upload's data is dropped unread (unmasking it in this process would slow the client beside
      // it); a download's peer sends only its close, which the decoder reads
      if (test === 'upload') ch.attach({ data: () => {}, end: () => {} });
      else ch.enableWs('server', { maxFrame: 1 << 24, text: { max: 1 << 16, onMessage: () => {} } });
      await script.run?.(ch, test, sock);
    } catch {
      // the client went away: the script is over
    } finally {
      ch.close();
      conns.delete(ch);
    }
  });
  return {
    ...(await onLoopback(srv, () => {
      for (const c of conns) c.close();
    })),
    seen,
  };
}

/** The 101 answer to an ndt7 upgrade, with or without the subprotocol. */
function upgradeAnswer(key: string, subprotocol: boolean): string {
  return (
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${wsAccept(key)}\r\n` +
    (subprotocol ? `Sec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n` : '') +
    '\r\n'
  );
}

/** Listens on 127.0.0.1, port 0; `close` ends the open connections (`endAll`), then the server. */
async function onLoopback(
  srv: net.Server,
  endAll: () => void,
): Promise<{ port: number; close(): Promise<void> }> {
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: async () => {
      endAll();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Sends binary messages of `size` for `ms` (paced by the socket), then returns. */
export async function sendFor(ch: Channel, ms: number, size = 64 * 1024): Promise<void> {
  const frame = encodeFrame(OP_BINARY, Buffer.alloc(size, 7), false);
  const until = Date.now() + ms;
  while (Date.now() < until && !ch.closed) {
    if (!ch.write(frame)) await new Promise<void>((r) => ch.onceDrain(r));
  }
}

/** One text message, of any size (for the oversized-message server). */
export function sendText(ch: Channel, text: string | Buffer): void {
  ch.write(encodeFrame(OP_TEXT, Buffer.isBuffer(text) ? text : Buffer.from(text), false));
}

export interface ControlServer {
  port: number;
  /** per test: the ping payloads sent, the pong payloads and the close codes that came back */
  log: Record<'download' | 'upload', { pings: string[]; pongs: string[]; closes: number[] }>;
  close(): Promise<void>;
}

/**
 * An ndt7 server that exercises the client's WebSocket duties (RFC 6455): a ping every 100 ms in both
 * tests, a measurement split into a text frame and a continuation, and at the end of the download its
 * own close. It decodes everything the client sends, so the pongs and the close can be checked.
 */
export async function controlServer(testMs: number, minRttUs: number): Promise<ControlServer> {
  const log: ControlServer['log'] = {
    download: { pings: [], pongs: [], closes: [] },
    upload: { pings: [], pongs: [], closes: [] },
  };
  const socks = new Set<net.Socket>();
  const srv = net.createServer((sock) => {
    socks.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => socks.delete(sock));
    let head = '';
    let test: 'download' | 'upload' = 'download';
    let decoder: WsDecoder | undefined;
    let peerClosed = false;
    const onData = (d: Buffer) => {
      if (decoder) {
        try {
          decoder.push(d);
        } catch {
          sock.destroy();
        }
        return;
      }
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      test = head.includes('/upload') ? 'upload' : 'download';
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)?.[1] ?? '';
      sock.write(upgradeAnswer(key, true));
      const l = log[test];
      decoder = new WsDecoder(
        true,
        () => {},
        (op, payload) => {
          if (op === OP_PONG) l.pongs.push(payload.toString());
          if (op === OP_CLOSE) {
            l.closes.push(payload.length >= 2 ? payload.readUInt16BE(0) : 0);
            peerClosed = true;
            if (test === 'upload') {
              sock.write(encodeFrame(OP_CLOSE, payload.subarray(0, 2), false));
              sock.end();
            }
          }
        },
        { maxFrame: 1 << 24 },
      );
      const rest = Buffer.from(head.slice(end + 4), 'latin1');
      if (rest.length) onData(rest);
      void script(sock, test, l, () => peerClosed);
    };
    sock.on('data', onData);
  });

  const script = async (
    sock: net.Socket,
    test: 'download' | 'upload',
    l: ControlServer['log']['download'],
    closed: () => boolean,
  ) => {
    const frame = encodeFrame(OP_BINARY, Buffer.alloc(64 * 1024, 7), false);
    const until = Date.now() + testMs;
    let next = Date.now();
    let n = 0;
    while (Date.now() < until && !sock.destroyed && !closed()) {
      if (Date.now() >= next) {
        next += 100;
        const p = `ping-${test}-${n++}`;
        l.pings.push(p);
        sock.write(encodeFrame(OP_PING, Buffer.from(p), false));
        // one measurement in two frames: text without FIN, then its continuation
        const m = Buffer.from(JSON.stringify({ TCPInfo: { MinRTT: minRttUs, RTT: minRttUs * 2 } }));
        const cut = m.length >> 1;
        sock.write(
          Buffer.concat([Buffer.from([OP_TEXT]), frameHeader(OP_TEXT, cut).subarray(1), m.subarray(0, cut)]),
        );
        sock.write(Buffer.concat([frameHeader(OP_CONT, m.length - cut), m.subarray(cut)]));
      }
      if (test === 'download') {
        if (!sock.write(frame)) await new Promise<void>((r) => sock.once('drain', () => r()));
      } else {
        await sleep(10);
      }
    }
    if (test === 'download' && !sock.destroyed) {
      sock.write(encodeFrame(OP_CLOSE, Buffer.from([0x03, 0xe8]), false));
      // the client's answer comes through the decoder; then the connection ends
      for (let i = 0; i < 100 && !closed(); i++) await sleep(20);
      sock.end();
    }
  };

  return {
    ...(await onLoopback(srv, () => {
      for (const s of socks) s.destroy();
    })),
    log,
  };
}
