import net from 'node:net';
import tls from 'node:tls';
import type { Engine } from '../engine/types.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { Channel } from './channel.js';
import { type SessionLimits, serveSession } from './session.js';
import { wsAccept } from './ws.js';

/**
 * Our RMBT measurement server. A listener is either `plain` (the server speaks first, legacy RMBT) or
 * `http` (the client sends an HTTP Upgrade to RMBT or to WebSocket, §2.3/§2.4), each with or without TLS.
 */
export interface ListenerSpec {
  port: number;
  tls: boolean;
  mode: 'plain' | 'http';
}

export interface RmbtServerOptions extends SessionLimits {
  host: string;
  listeners: readonly ListenerSpec[];
  tlsCreds?: { cert: string; key: string };
  maxConnections: number;
  engine: Engine;
  log?: Logger;
}

export interface BoundListener extends ListenerSpec {
  /** the port actually bound (port 0 picks one) */
  port: number;
}

export class RmbtServer {
  private servers: net.Server[] = [];
  private sockets = new Set<net.Socket>();
  private bound: BoundListener[] = [];
  /** counters for tests and the status page */
  readonly stats = { accepted: 0, refused: 0, sessions: 0, failed: 0 };

  constructor(private readonly o: RmbtServerOptions) {}

  get listeners(): readonly BoundListener[] {
    return this.bound;
  }

  portOf(mode: 'plain' | 'http', useTls: boolean): number | undefined {
    return this.bound.find((l) => l.mode === mode && l.tls === useTls)?.port;
  }

  get activeConnections(): number {
    return this.sockets.size;
  }

  async start(): Promise<void> {
    for (const spec of this.o.listeners) {
      if (spec.tls && !this.o.tlsCreds)
        throw new ProbeError('BP_ERR_CONFIG', 'a TLS listener needs a certificate');
      const server = spec.tls
        ? tls.createServer({
            cert: this.o.tlsCreds!.cert,
            key: this.o.tlsCreds!.key,
            minVersion: 'TLSv1.2',
            handshakeTimeout: this.o.idleTimeoutMs,
          })
        : net.createServer();
      const event = spec.tls ? 'secureConnection' : 'connection';
      server.on(event, (s: net.Socket) => this.accept(s, spec));
      server.on('tlsClientError', (err: Error) =>
        this.o.log?.debug({ err: err.message }, 'TLS handshake failed'),
      );
      server.on('error', (err) => this.o.log?.error({ err: err.message }, 'listener error'));
      // Count raw TCP connections, including TLS ones still in their handshake, against the limit.
      if (spec.tls) server.on('connection', (s: net.Socket) => this.admit(s));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(spec.port, this.o.host, () => {
          server.off('error', reject);
          resolve();
        });
      }).catch((err) => {
        throw toProbeError(err, 'BP_ERR_CONFIG');
      });
      const addr = server.address() as net.AddressInfo;
      this.bound.push({ ...spec, port: addr.port });
      this.servers.push(server);
    }
    this.o.log?.info({ host: this.o.host, listeners: this.bound }, 'RMBT measurement server listening');
  }

  /** Enforces max_connections on raw sockets; returns false (and closes) when over the limit. */
  private admit(s: net.Socket): boolean {
    if (this.sockets.has(s)) return true;
    if (this.sockets.size >= this.o.maxConnections) {
      this.stats.refused++;
      s.destroy();
      return false;
    }
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    return true;
  }

  private accept(socket: net.Socket, spec: ListenerSpec): void {
    // For TLS the TCP socket under this one was admitted (and is tracked) already.
    if (!spec.tls && !this.admit(socket)) return;
    this.stats.accepted++;
    socket.setTimeout(this.o.idleTimeoutMs * 2, () => socket.destroy());
    const ch = new Channel(socket);
    const log = this.o.log?.child({ peer: `${socket.remoteAddress}:${socket.remotePort}` });
    (async () => {
      if (spec.mode === 'http' && !(await this.upgrade(ch))) return;
      this.stats.sessions++;
      await serveSession(ch, this.o.engine, this.o, log);
    })()
      .catch((err) => {
        this.stats.failed++;
        const e = toProbeError(err);
        log?.debug({ code: e.code, err: e.message }, 'session ended with an error');
      })
      .finally(() => {
        if (!socket.destroyed) socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      });
  }

  /**
   * The HTTP side of an `http` listener. The request head is read in full (up to 8 KiB, robust to
   * split segments, like RUSTD); non-GET gets 405, a GET without a usable Upgrade gets 426.
   */
  private async upgrade(ch: Channel): Promise<boolean> {
    const head = await ch.readHttpHead(this.o.idleTimeoutMs);
    const reply = (status: string, extra = '') =>
      ch.writeRaw(
        Buffer.from(`HTTP/1.1 ${status}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`, 'latin1'),
      );
    if (!head.startsWith('GET ')) {
      reply('405 Method Not Allowed', 'Allow: GET\r\n');
      return false;
    }
    const upgrade = /^upgrade:\s*(\S+)\s*$/im.exec(head)?.[1]?.toLowerCase();
    if (upgrade === 'rmbt') {
      // No trailing NUL: that byte in RMBTD's reply is a bug clients work around (§2.3).
      ch.writeRaw(
        Buffer.from(
          'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: RMBT\r\n\r\n',
          'latin1',
        ),
      );
      return true;
    }
    if (upgrade === 'websocket') {
      const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(head)?.[1];
      const version = /^sec-websocket-version:\s*(\S+)\s*$/im.exec(head)?.[1];
      if (!key || (version !== undefined && version !== '13')) {
        reply('400 Bad Request', 'Sec-WebSocket-Version: 13\r\n');
        return false;
      }
      ch.writeRaw(
        Buffer.from(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${wsAccept(key)}\r\n\r\n`,
          'latin1',
        ),
      );
      ch.enableWs('server');
      return true;
    }
    reply('426 Upgrade Required', 'Upgrade: RMBT, websocket\r\n');
    return false;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers = [];
  }
}
