import { randomUUID } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { tcpInfo } from '../engine/tcpinfo.js';
import type { Engine, EngineRun, StreamOutcome } from '../engine/types.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { InboundReport } from '../measure/inbound.js';
import type { TlsCreds } from '../net/certs.js';
import { Channel } from '../net/channel.js';
import type { Quota } from '../net/quota.js';
import { wsAccept } from '../net/ws.js';
import {
  DOWNLOAD_PATH,
  HARD_LIMIT_MS,
  MAX_MESSAGE,
  MAX_TEXT,
  type Measurement,
  messageSizes,
  nextMeasureMs,
  SCALE_DIVISOR,
  SUBPROTOCOL,
  TEST_MS,
  UPLOAD_PATH,
} from './messages.js';

/**
 * Our ndt7 server (ndt7 spec v0.11.0; what m-lab/ndt-server does, research/public-servers.md §1.1–1.2):
 * `GET /ndt/v7/download|upload` upgraded to WebSocket with the ndt7 subprotocol (400 without it); the
 * download sends binary messages growing from 8 KiB to 1 MiB for ten seconds, the upload counts what the
 * client sends; both send a measurement (AppInfo, ConnectionInfo, the kernel's TCPInfo where the native
 * addon reads it) about every 250 ms at random, each followed by a ping, and close at ten seconds with a
 * hard limit of fifteen. So a LAN device, our own client or M-Lab's browser client can test to it.
 */

export interface Ndt7ServerOptions {
  host: string;
  /** plain ws port; 0 = a free one; undefined = none */
  port?: number | undefined;
  /** wss port (needs creds); 0 = a free one; undefined = none */
  tlsPort?: number | undefined;
  creds?: TlsCreds | undefined;
  maxSessions: number;
  engine: Engine;
  quota: Quota;
  onTest?: ((r: InboundReport) => void) | undefined;
  log?: Logger | undefined;
  /** test length (ms); the spec's ten seconds unless a test asks for less */
  testMs?: number;
}

/** How long a peer has to send its upgrade request. */
const HEAD_TIMEOUT_MS = 10_000;
/** Handshakes in progress at once (beyond max_sessions; the oldest is dropped past this). */
const MAX_HANDSHAKES = 64;
/** After our close, how long the peer has to answer it. */
const CLOSE_WAIT_MS = 1000;

export class Ndt7Server {
  private servers: net.Server[] = [];
  private readonly conns = new Set<Channel>();
  private handshakes = new Set<Channel>();
  private active = 0;
  port = 0;
  tlsPort = 0;
  readonly stats = { sessions: 0, busy: 0, quota: 0, bad_request: 0, not_found: 0, handshake_timeout: 0 };

  constructor(private readonly o: Ndt7ServerOptions) {}

  get activeSessions(): number {
    return this.active;
  }

  async start(): Promise<void> {
    const listen = (srv: net.Server, port: number) =>
      new Promise<number>((resolve, reject) => {
        srv.once('error', (err) =>
          reject(
            new ProbeError(
              'BP_ERR_CONFIG',
              `ndt7 server cannot listen on ${this.o.host}:${port}: ${err.message}`,
            ),
          ),
        );
        srv.listen(port, this.o.host, () => resolve((srv.address() as net.AddressInfo).port));
      });
    try {
      if (this.o.port !== undefined) {
        const srv = net.createServer((s) => this.accept(s, false));
        this.servers.push(srv);
        this.port = await listen(srv, this.o.port);
      }
      if (this.o.tlsPort !== undefined) {
        if (!this.o.creds) throw new ProbeError('BP_ERR_CONFIG', 'the ndt7 TLS port needs a certificate');
        const srv = tls.createServer(
          { cert: this.o.creds.cert, key: this.o.creds.key, minVersion: 'TLSv1.2' },
          (s) => this.accept(s, true),
        );
        // a failed handshake is the peer's problem, not the server's
        srv.on('tlsClientError', () => {});
        this.servers.push(srv);
        this.tlsPort = await listen(srv, this.o.tlsPort);
      }
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.close();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers = [];
  }

  private accept(sock: net.Socket, secure: boolean): void {
    sock.on('error', () => {});
    const ch = new Channel(sock);
    this.conns.add(ch);
    sock.once('close', () => {
      this.conns.delete(ch);
      this.handshakes.delete(ch);
    });
    this.handshakes.add(ch);
    if (this.handshakes.size > MAX_HANDSHAKES) {
      const oldest = this.handshakes.values().next().value!;
      this.handshakes.delete(oldest);
      oldest.close();
    }
    this.serve(ch, sock, secure).catch((err) => {
      this.o.log?.debug({ err: toProbeError(err).message }, 'ndt7 connection ended');
      ch.close();
    });
  }

  private reply(ch: Channel, status: string, text: string): void {
    ch.writeRaw(
      Buffer.from(
        `HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
      ),
    );
    ch.socket.end();
  }

  private async serve(ch: Channel, sock: net.Socket, secure: boolean): Promise<void> {
    let head: string;
    try {
      head = await ch.readHttpHead(HEAD_TIMEOUT_MS);
    } catch (err) {
      if (toProbeError(err).code === 'BP_ERR_TIMEOUT') this.stats.handshake_timeout++;
      ch.close();
      return;
    }
    this.handshakes.delete(ch);
    const [line = '', ...rest] = head.split('\r\n');
    const m = /^GET (\S+) HTTP\/1\.1$/.exec(line);
    const path = m ? m[1]!.split('?')[0] : undefined;
    const header = (name: string) =>
      rest
        .find((h) => h.toLowerCase().startsWith(`${name}:`))
        ?.slice(name.length + 1)
        .trim();
    if (path !== DOWNLOAD_PATH && path !== UPLOAD_PATH) {
      this.stats.not_found++;
      return this.reply(ch, '404 Not Found', 'ndt7 serves /ndt/v7/download and /ndt/v7/upload\n');
    }
    const key = header('sec-websocket-key');
    const protocols = (header('sec-websocket-protocol') ?? '').split(',').map((p) => p.trim());
    // the spec: a server answers 400 to an upgrade that does not name the ndt7 subprotocol
    if (!key || !/websocket/i.test(header('upgrade') ?? '') || !protocols.includes(SUBPROTOCOL)) {
      this.stats.bad_request++;
      return this.reply(
        ch,
        '400 Bad Request',
        `an ndt7 test is a WebSocket upgrade with the ${SUBPROTOCOL} subprotocol\n`,
      );
    }
    const peer = sock.remoteAddress ?? '';
    if (this.active >= this.o.maxSessions) {
      this.stats.busy++;
      return this.reply(ch, '503 Service Unavailable', 'the server is busy; try again later\n');
    }
    const refusal = this.o.quota.check(peer);
    if (refusal) {
      this.stats.quota++;
      return this.reply(ch, '429 Too Many Requests', `${refusal.message}\n`);
    }
    ch.writeRaw(
      Buffer.from(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${wsAccept(key)}\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n\r\n`,
        'latin1',
      ),
    );
    // the peer's text messages (a client's own measurements) are read and dropped, bounded
    ch.enableWs('server', { maxFrame: MAX_MESSAGE, text: { max: MAX_TEXT, onMessage: () => {} } });
    this.active++;
    this.stats.sessions++;
    this.o.quota.begin(peer);
    try {
      await this.test(ch, sock, secure, path === DOWNLOAD_PATH ? 'download' : 'upload');
    } finally {
      this.active--;
    }
  }

  private async test(
    ch: Channel,
    sock: net.Socket,
    secure: boolean,
    test: 'download' | 'upload',
  ): Promise<void> {
    const started = new Date();
    const t0 = process.hrtime.bigint();
    const peer = sock.remoteAddress ?? '';
    const testMs = this.o.testMs ?? TEST_MS;
    const info = {
      Client: `${bracket(peer)}:${sock.remotePort}`,
      Server: `${bracket(sock.localAddress ?? '')}:${sock.localPort}`,
      UUID: randomUUID(),
      StartTime: started.toISOString(),
    };
    let run: EngineRun;
    if (test === 'download') {
      // messages grow from 8 KiB, doubling while at most 1/16 of what was sent, to 1 MiB (the spec's
      // appendix; ndt-server caps them there)
      const sets = messageSizes().map((n) => ch.chunkSet(n, false, 2));
      run = this.o.engine.run(
        [ch],
        {
          mode: 'send',
          framing: { kind: 'raw' },
          chunks: [sets[0]!],
          scale: { sets: sets.slice(1), divisor: SCALE_DIVISOR },
          until: { durationNs: testMs * 1e6 },
          sampleNs: 50e6,
          idleTimeoutMs: 7000,
          // binary data from the client during a download is counted (and refused below), never kept
          countInbound: true,
        },
        [t0],
      );
    } else {
      run = this.o.engine.run(
        [ch],
        {
          mode: 'receive',
          framing: { kind: 'raw' },
          sampleNs: 50e6,
          idleTimeoutMs: 7000,
          maxDurationMs: testMs,
        },
        [t0],
      );
    }
    let ended: 'done' | 'quota' | 'limit' | 'error' = 'done';
    let lastCount = 0;
    // one measurement now and then, with a ping after it (as ndt-server does); the quota is checked here
    const measure = (): void => {
      const elapsedUs = Math.round(Number(process.hrtime.bigint() - t0) / 1e3);
      const bytes = run.counters[0]!;
      const m: Measurement = {
        AppInfo: { ElapsedTime: elapsedUs, NumBytes: bytes },
        ConnectionInfo: info,
        Origin: 'server',
        Test: test,
      };
      const ti = tcpInfo(sock);
      if (ti) m.TCPInfo = { ...ti, ElapsedTime: elapsedUs };
      ch.writeText(JSON.stringify(m));
      ch.writePing(Buffer.from(JSON.stringify(Date.now() * 1e6)));
      this.o.quota.add(peer, bytes - lastCount);
      lastCount = bytes;
      if (this.o.quota.remaining(peer) <= 0) {
        ended = 'quota';
        run.abort();
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const tick = () => {
      measure();
      timer = setTimeout(tick, nextMeasureMs());
    };
    timer = setTimeout(tick, nextMeasureMs());
    const hard = setTimeout(() => {
      ended = 'limit';
      ch.close();
    }, HARD_LIMIT_MS);
    let out: StreamOutcome;
    try {
      [out] = (await run.done) as [StreamOutcome];
    } finally {
      clearTimeout(timer);
    }
    if (!ch.closed) {
      measure();
      ch.writeClose(1000);
      await ch.waitClosed(CLOSE_WAIT_MS);
    }
    clearTimeout(hard);
    ch.close();
    const code = out.error?.code;
    if (test === 'download' && (out.rx?.bytes ?? 0) > 0) ended = 'error';
    else if (code && code !== 'BP_ERR_PEER_CLOSED' && ended === 'done') ended = 'error';
    this.o.quota.add(peer, out.bytes - lastCount);
    const points = out.points;
    const dir = { streams: [points], totals: [out.bytes] };
    this.o.onTest?.({
      kind: 'ndt7-server',
      started_at: started,
      finished_at: new Date(),
      info: {
        peer,
        peer_port: sock.remotePort ?? 0,
        local_port: sock.localPort ?? 0,
        protocol: secure ? 'wss' : 'ws',
        // the peer's view, in btest's words: receive = it downloaded
        direction: test === 'download' ? 'receive' : 'send',
        connections: 1,
        bytes_sent: test === 'download' ? out.bytes : 0,
        bytes_received: test === 'upload' ? out.bytes : (out.rx?.bytes ?? 0),
        duration_ms: Math.round(out.endNs / 1e6),
        test_uuid: info.UUID,
        end: ended,
      },
      ...(test === 'download' ? { download: dir } : { upload: dir }),
      engine: run.kind,
      ...(ended === 'error'
        ? {
            error:
              test === 'download' && (out.rx?.bytes ?? 0) > 0
                ? {
                    code: 'BP_ERR_PROTOCOL' as const,
                    message: 'the client sent binary data during the download',
                  }
                : out.error!,
          }
        : {}),
    });
  }
}

function bracket(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
