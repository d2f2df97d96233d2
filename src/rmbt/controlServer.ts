import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '../log.js';
import { makeToken } from './token.js';

/**
 * A minimal RMBT control server (specs/rmbt.md §6): enough for our client, the Python client and the
 * no-configuration demo. It registers clients, hands out tokens for our measurement server, and keeps
 * submitted results in memory (bounded) for read-back.
 */
export interface ControlServerOptions {
  host: string;
  port: number;
  key: string;
  /** host name to give clients; default: the Host header they used */
  publicHost?: string;
  ports: { plain?: number; tlsPlain?: number; http?: number; tls?: number };
  encryption: boolean;
  duration: number;
  threads: number;
  pings: number;
  /** a token was issued for `threads` streams (the measurement server caps its connections by it) */
  onIssue?: (uuid: string, threads: number) => void;
  log?: Logger;
}

/** Tests remembered (for their result read-back); the oldest are dropped first. */
const MAX_TESTS = 1000;
/** Bytes of submitted result bodies kept in memory in all; past it the oldest bodies are dropped. */
export const MAX_RESULT_BYTES = 16 * 1024 * 1024;
/** Body limit of `result` (a real one is well under 200 KB, research F6; nginx at CTRL allows 1 MiB). */
export const RESULT_BODY_LIMIT = 1024 * 1024;
/** Body limit of `settings` and `testRequest`. */
export const REQUEST_BODY_LIMIT = 64 * 1024;

interface Stored {
  testUuid: string;
  openTestUuid: string;
  clientUuid: string;
  time: number;
  result?: Record<string, unknown>;
  resultBytes?: number;
}

type Body = Record<string, unknown>;

export class ControlServer {
  readonly app: FastifyInstance;
  private tests = new Map<string, Stored>();
  private resultBytes = 0;
  private boundPort = 0;

  constructor(private readonly o: ControlServerOptions) {
    this.app = Fastify({
      logger: false,
      bodyLimit: REQUEST_BODY_LIMIT,
      connectionTimeout: 30_000,
      requestTimeout: 30_000,
      keepAliveTimeout: 5_000,
    });
    this.routes();
  }

  get port(): number {
    return this.boundPort;
  }

  get results(): Stored[] {
    return [...this.tests.values()].filter((t) => t.result);
  }

  private remember(t: Stored): void {
    this.tests.set(t.testUuid, t);
    if (this.tests.size > MAX_TESTS) this.forget(this.tests.keys().next().value!);
  }

  private forget(uuid: string): void {
    const t = this.tests.get(uuid);
    this.tests.delete(uuid);
    this.resultBytes -= t?.resultBytes ?? 0;
  }

  /** Keeps a result body, dropping the oldest bodies (not the tests) while over MAX_RESULT_BYTES. */
  private keep(t: Stored, body: Record<string, unknown>, bytes: number): void {
    if (t.result) this.resultBytes -= t.resultBytes ?? 0;
    t.result = body;
    t.resultBytes = bytes;
    this.resultBytes += bytes;
    for (const old of this.tests.values()) {
      if (this.resultBytes <= MAX_RESULT_BYTES) break;
      if (old === t || !old.result) continue;
      this.resultBytes -= old.resultBytes ?? 0;
      delete old.result;
      delete old.resultBytes;
    }
  }

  private routes(): void {
    const p = '/RMBTControlServer';
    this.app.post(`${p}/settings`, async (req) => {
      const body = (req.body ?? {}) as Body;
      const given =
        typeof body.uuid === 'string' && /^[0-9a-f-]{36}$/.test(body.uuid) ? body.uuid : undefined;
      return {
        settings: [
          {
            uuid: given ?? randomUUID(),
            terms_and_conditions: { version: 1, url: '' },
            urls: {},
            versions: { control_server_version: 'bandwidth-probe' },
            servers: [],
            servers_ws: [],
            servers_qos: [],
          },
        ],
        error: [],
      };
    });

    this.app.post(`${p}/testRequest`, async (req, reply) => {
      const body = (req.body ?? {}) as Body;
      const clientUuid = typeof body.uuid === 'string' ? body.uuid : '';
      if (!/^[0-9a-f-]{36}$/.test(clientUuid))
        return reply.code(400).send({ error: ['uuid missing or invalid; call settings first'] });
      const caps = (body.capabilities ?? {}) as Body;
      // Server type as CTRL chooses it (§6.2): RMBThttp capability → RMBThttp; client RMBTws → RMBTws; else RMBT.
      const type = caps.RMBThttp === true ? 'RMBThttp' : body.client === 'RMBTws' ? 'RMBTws' : 'RMBT';
      const { ports } = this.o;
      const http = type !== 'RMBT';
      const tlsPort = http ? ports.tls : ports.tlsPlain;
      const plainPort = http ? ports.http : ports.plain;
      const encryption = this.o.encryption ? Boolean(tlsPort) : !plainPort;
      const port = encryption ? tlsPort : plainPort;
      if (!port) return reply.send({ error: [`no measurement server port for ${type}`] });
      const testUuid = randomUUID();
      const openUuid = randomUUID();
      const wanted = Number(body.num_threads);
      const threads = wanted > 0 && wanted < 10 ? Math.min(wanted, this.o.threads) : this.o.threads;
      const start = Math.floor(Date.now() / 1000);
      this.o.onIssue?.(openUuid, threads);
      this.remember({ testUuid, openTestUuid: `O${openUuid}`, clientUuid, time: Date.now() });
      const host = this.o.publicHost ?? req.hostname.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
      return {
        // CTRL signs the open_test_uuid (without its O prefix) as the token's uuid (§3.1).
        test_token: makeToken(this.o.key, start, openUuid),
        test_uuid: testUuid,
        open_test_uuid: `O${openUuid}`,
        test_server_address: host,
        test_server_port: port,
        test_server_encryption: encryption,
        test_server_type: type,
        test_server_name: 'bandwidth-probe',
        // The real control server sends these three as strings (§6.2).
        test_duration: String(this.o.duration),
        test_numthreads: String(threads),
        test_numpings: String(this.o.pings),
        test_wait: 0,
        client_remote_ip: req.ip,
        result_url: `${req.protocol}://${req.host}${p}/result`,
        loop_uuid: null,
        error: [],
      };
    });

    this.app.post(`${p}/result`, { bodyLimit: RESULT_BODY_LIMIT }, async (req, reply) => {
      const body = (req.body ?? {}) as Body;
      const t = typeof body.test_uuid === 'string' ? this.tests.get(body.test_uuid) : undefined;
      if (!t) return reply.code(400).send({ error: ['unknown test_uuid'] });
      if (typeof body.test_token !== 'string' || !body.test_token.includes(t.openTestUuid.slice(1))) {
        return reply.code(400).send({ error: ['test_token does not belong to this test'] });
      }
      this.keep(t, body, Number(req.headers['content-length']) || JSON.stringify(body).length);
      return { error: [] };
    });

    this.app.post(`${p}/testresult`, async (req, reply) => {
      const body = (req.body ?? {}) as Body;
      const t = typeof body.test_uuid === 'string' ? this.tests.get(body.test_uuid) : undefined;
      if (!t?.result) return reply.code(404).send({ error: ['no result for this test_uuid'] });
      const r = t.result;
      return {
        testresult: [
          {
            open_test_uuid: t.openTestUuid,
            open_uuid: `P${t.clientUuid}`,
            time: t.time,
            timezone: 'UTC',
            measurement_result: {
              download_kbit: r.test_speed_download,
              upload_kbit: r.test_speed_upload,
              ping_ms: typeof r.test_ping_shortest === 'number' ? r.test_ping_shortest / 1e6 : null,
            },
            status: 'finished',
          },
        ],
        error: [],
      };
    });
  }

  async start(): Promise<void> {
    await this.app.listen({ host: this.o.host, port: this.o.port });
    const addr = this.app.server.address();
    this.boundPort = typeof addr === 'object' && addr ? addr.port : this.o.port;
    this.o.log?.info({ host: this.o.host, port: this.boundPort }, 'RMBT control server listening');
  }

  async close(): Promise<void> {
    await this.app.close();
  }
}
