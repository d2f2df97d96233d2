import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { makeToken } from '../../src/rmbt/token.js';

/**
 * A stand-in for the control servers real RMBT deployments run, behaving as their code does on the
 * points that decide whether a client is accepted and files the right data. Every behaviour names the
 * upstream source it comes from, as read in ../shared/research/rmbt-deployments.md:
 *
 * - `ctrl`: RTR's Spring control server, rtr-nettest/open-rmbt-control@d8aa9a3 (RTR-Netztest).
 * - `ctu`: CTUCZ/nettest-rmbt-control@67d64ff, CTRL without v2 tokens (Czech regulator).
 * - `legacy`: the Restlet server of rtr-nettest/open-rmbt (RegistrationResource.java@dfc008de/06a7faea,
 *   ResultResource.java@0932efe2, SettingsResource.java@0fa9d554), which forks still run.
 * - `specure`: Specure's ONT multi-tenant server, specure/control-server-public@822788d (Nettfart).
 *
 * It hands out tokens for a real measurement server (ours) that checks them, v2 parts included.
 */
export type Generation = 'ctrl' | 'ctu' | 'legacy' | 'specure';

export interface OperatorOptions {
  generation: Generation;
  /** the measurement server's shared key */
  key: string;
  /** our measurement server's listeners (upgrade = RMBThttp/RMBTws, serverFirst = legacy RMBT) */
  ports: { upgrade: number; upgradeTls: number; serverFirst: number; serverFirstTls: number };
  encryption?: boolean;
  /**
   * CTRL prefers the type row equal to the request's `client` (TestSettingsFacade.java:317-321): a
   * server with an `RMBT` row answers `RMBT` to `client: "RMBT"` even with the RMBThttp capability.
   * 'upgrade' points that row at an upgrade-only listener (the Rust server has no other kind, F3).
   */
  rmbtRow?: 'upgrade' | 'server-first';
  duration?: number;
  threads?: number;
  /** force the measurement server address (default: the family the client asked for or came from) */
  serverAddress?: string;
  /** announce family-pinned control URLs in `settings[0].urls` (CTRL RtrSettingsServiceImpl.java:366-383) */
  pinnedUrls?: boolean;
  /** the result_url to announce (CTRL derives it from CONTROL_SERVER_URL, default a loopback URL) */
  resultUrl?: string;
  /** optional answer fields sent as "" */
  emptyOptionals?: boolean;
  /** Specure: the tenant the X-Nettest-Client header must name */
  tenant?: string;
  /** seconds the client is told to wait before it connects (a hostile 600 in) */
  testWait?: number;
  /** request body limit of the front proxy (default nginx's 1 MiB) */
  bodyLimit?: number;
}

export interface Recorded {
  ip: string;
  body: Record<string, unknown>;
  headers: http.IncomingHttpHeaders;
}

/** nginx's default client_max_body_size, in front of CTRL (HeaderExtrudeUtil reads nginx headers; F6). */
const BODY_LIMIT = 1024 * 1024;
/** The requirement RTR carried into CTRL (application.yml:68) and the legacy server checks (F4). */
function satisfiesRtrVersions(v: unknown): boolean {
  if (typeof v !== 'string') return false;
  const parts = v.split('.').map(Number);
  while (parts.length < 3) parts.push(0);
  if (parts.some((p) => !Number.isInteger(p))) return false;
  const [maj, min, pat] = parts as [number, number, number];
  return (maj === 0 && min === 1 && pat === 0) || (maj === 0 && min === 3 && pat === 0) || maj === 1;
}

const bare = (ip: string | undefined) => (ip ?? '').replace(/^::ffff:(?=\d+\.)/i, '');

export class OperatorStandIn {
  readonly settings: Recorded[] = [];
  readonly testRequests: Recorded[] = [];
  /** results the operator stored */
  readonly results: Recorded[] = [];
  /** results it answered but did not store */
  readonly dropped: Recorded[] = [];
  /** bodies refused for their size (nginx 413) */
  readonly tooLarge: number[] = [];
  private readonly server: http.Server;
  private clients = new Map<string, { termsVersion?: number }>();
  private loops = new Set<string>();
  private tests = new Map<string, { clientUuid: string; time: number }>();
  readonly termsVersion = 4;
  readonly termsUrl = 'https://operator.example/terms';
  port = 0;

  constructor(private readonly o: OperatorOptions) {
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  /** Listens on [::] with IPv4 mapped in: one port answers 127.0.0.1 and ::1, like a dual-stack host. */
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen({ host: '::', port: 0, ipv6Only: false }, r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  /** The control URL a client configures, with the host given (127.0.0.1, [::1], localhost). */
  url(host: string): string {
    return `http://${host}:${this.port}${this.prefix}`;
  }

  private get prefix(): string {
    // Specure's context path with /mobile under it (SPEC-CS URIConstants.java); the others /RMBTControlServer.
    return '/RMBTControlServer';
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size <= (this.o.bodyLimit ?? BODY_LIMIT)) chunks.push(c as Buffer);
    }
    if (size > (this.o.bodyLimit ?? BODY_LIMIT)) {
      // nginx reads the rest (lingering close) and answers 413 in HTML
      this.tooLarge.push(size);
      res.writeHead(413, { 'content-type': 'text/html', connection: 'close' });
      res.end('<html><body><h1>413 Request Entity Too Large</h1></body></html>');
      return;
    }
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    } catch {
      // CTRL: JSON parse problems are HTTP 400 "Invalid request format" (RtrAdvice.java:32-108)
      return send(400, { error: ['Invalid request format'] });
    }
    const rec: Recorded = { ip: bare(req.socket.remoteAddress), body, headers: req.headers };
    let path = (req.url ?? '').split('?')[0]!;
    if (!path.startsWith(this.prefix)) return send(404, { error: ['not found'] });
    path = path.slice(this.prefix.length);
    if (this.o.generation === 'specure') {
      // All calls live under /mobile (URIConstants.java; MobileMeasurementController.java:31-37) and
      // need the tenant header except /, /ip, /mobile/ip (TenantInterceptor.java:29-48,68-70).
      if (!path.startsWith('/mobile/')) return send(404, { error: ['No handler found'] });
      path = path.slice('/mobile'.length);
      if (req.headers['x-nettest-client'] !== this.o.tenant)
        return send(400, { error: ['WrongTenantException: missing or unknown X-Nettest-Client'] });
    }
    if (req.method !== 'POST') return send(405, { error: ['POST only'] });
    if (path === '/settings') {
      const r = this.onSettings(rec);
      return send(r.status, r.body);
    }
    if (path === '/testRequest') return send(...this.onTestRequest(rec));
    if (path === '/result') return send(...this.onResult(rec));
    return send(404, { error: ['not found'] });
  }

  private onSettings(rec: Recorded): { status: number; body: unknown } {
    this.settings.push(rec);
    const b = rec.body;
    // CTRL knows its client names; another is HTTP 400 (RtrSettingsServiceImpl.java:54-56, RtrAdvice.java:44-48).
    if (this.o.generation !== 'legacy' && !['RMBT', 'RMBTws'].includes(String(b.name)))
      return { status: 400, body: { error: ['Your client version is not supported.'] } };
    const known = typeof b.uuid === 'string' && this.clients.has(b.uuid) ? b.uuid : undefined;
    const accepted =
      b.terms_and_conditions_accepted === true || Number(b.terms_and_conditions_accepted_version) > 0;
    // CTRL creates a client only with accepted terms, else the answer has no uuid and no error
    // (RtrSettingsServiceImpl.java:61,73-88; default-property-inclusion non_null, application.yml:56).
    // The legacy server puts uuid only when it creates a client (SettingsResource.java).
    let uuid: string | undefined;
    if (known) {
      uuid = this.o.generation === 'legacy' ? undefined : known;
    } else if (accepted) {
      uuid = randomUUID();
      this.clients.set(uuid, {});
    }
    const client = uuid ?? known;
    if (client && accepted && b.terms_and_conditions_accepted_version !== undefined)
      this.clients.get(client)!.termsVersion = Number(b.terms_and_conditions_accepted_version);
    const pinned =
      this.o.pinnedUrls && this.o.generation !== 'legacy'
        ? {
            // Hosts without a scheme, as RTR's web client reads them (`https://${control_ipv4_only}`).
            control_ipv4_only: `127.0.0.1:${this.port}${this.prefix}`,
            control_ipv6_only: `[::1]:${this.port}${this.prefix}`,
          }
        : {};
    return {
      status: 200,
      body: {
        settings: [
          {
            ...(uuid ? { uuid } : {}),
            terms_and_conditions: { version: this.termsVersion, url: this.termsUrl },
            urls: pinned,
          },
        ],
        // CTRL's settings success has no error key (research §3); the others send an empty list.
        ...(this.o.generation === 'ctrl' || this.o.generation === 'ctu' ? {} : { error: [] }),
      },
    };
  }

  acceptedTermsOf(uuid: string): number | undefined {
    return this.clients.get(uuid)?.termsVersion;
  }

  private onTestRequest(rec: Recorded): [number, unknown] {
    this.testRequests.push(rec);
    const b = rec.body;
    const g = this.o.generation;
    if (g === 'legacy') {
      // RegistrationResource.java@dfc008de: client name and version checked, else ERROR_CLIENT_VERSION
      // (@06a7faea: as an npm semver range, RTR's 0.1.0 || 0.3.0 || ^1.0.0).
      if (!['RMBT', 'RMBTws'].includes(String(b.client)) || !satisfiesRtrVersions(b.version))
        return [200, { error: ['ERROR_CLIENT_VERSION'] }];
      if (typeof b.time !== 'number' || typeof b.timezone !== 'string')
        return [200, { error: ['ERROR_REQUEST'] }];
    }
    // CTRL: language required (TestSettingsFacade.java:490-492), a registered uuid (:167, :414-423).
    if (typeof b.language !== 'string') return [500, { error: ['NullPointerException'] }];
    if (typeof b.uuid !== 'string' || !this.clients.has(b.uuid))
      return [400, { error: ['Could not find client in database.'] }];
    const caps = (b.capabilities ?? {}) as Record<string, unknown>;
    // Candidate types (TestSettingsFacade.java:185-191), then the row equal to `client` (:317-321).
    let type: 'RMBT' | 'RMBThttp' | 'RMBTws';
    if (g === 'legacy') type = b.client === 'RMBTws' ? 'RMBTws' : 'RMBT';
    else if (caps.RMBThttp === true) type = this.o.rmbtRow && b.client === 'RMBT' ? 'RMBT' : 'RMBThttp';
    else if (b.client === 'RMBTws') type = 'RMBTws';
    else type = 'RMBT';
    const enc = this.o.encryption ?? true;
    const p = this.o.ports;
    const serverFirst = type === 'RMBT' && (g === 'legacy' || this.o.rmbtRow !== 'upgrade');
    const port = serverFirst ? (enc ? p.serverFirstTls : p.serverFirst) : enc ? p.upgradeTls : p.upgrade;
    // The server's address in the family asked for (protocol_version, :379-412), else the client's own.
    const v6 = b.protocol_version === 'ipv6' || (b.protocol_version !== 'ipv4' && rec.ip.includes(':'));
    const address = this.o.serverAddress ?? (v6 ? '::1' : '127.0.0.1');
    // num_threads only 1..9 (:439-456)
    const threads = this.o.threads ?? 3;
    const asked = Number(b.num_threads);
    const granted = asked > 0 && asked < 10 ? Math.min(asked, threads) : threads;
    const openUuid = randomUUID();
    const testUuid = randomUUID();
    const start = Math.floor(Date.now() / 1000);
    this.tests.set(testUuid, { clientUuid: b.uuid, time: Date.now() });
    // CTRL appends a v2 token bound to the address it saw (:264-279); CTU and the legacy server do not.
    const v2 = g === 'ctrl' ? rec.ip : undefined;
    const loop = b.loopmode_info as Record<string, unknown> | undefined;
    let loopUuid: string | null = null;
    if (loop && g !== 'legacy') {
      // CTRL stores loopmode_info and answers its loop_uuid, minting one first (:124-147, :245-249).
      loopUuid =
        typeof loop.loop_uuid === 'string' && this.loops.has(loop.loop_uuid) ? loop.loop_uuid : randomUUID();
      this.loops.add(loopUuid);
    }
    const empty = this.o.emptyOptionals ? '' : undefined;
    const resultUrl =
      this.o.resultUrl ??
      `http://${rec.headers.host}${this.prefix}${g === 'specure' ? '/mobile' : ''}/result`;
    return [
      200,
      {
        test_token: makeToken(this.o.key, start, openUuid, v2),
        test_uuid: testUuid,
        open_test_uuid: `O${openUuid}`,
        test_server_address: address,
        test_server_port: port,
        test_server_encryption: enc,
        // The legacy server never names the type (RegistrationResource.java: no test_server_type).
        ...(g === 'legacy' ? {} : { test_server_type: type }),
        test_server_name: empty ?? 'stand-in',
        test_duration: String(this.o.duration ?? 1),
        test_numthreads: String(granted),
        test_numpings: '5',
        test_wait: this.o.testWait ?? 0,
        client_remote_ip: rec.ip,
        result_url: empty ?? resultUrl,
        loop_uuid: loopUuid,
        error: [],
      },
    ];
  }

  private onResult(rec: Recorded): [number, unknown] {
    const b = rec.body;
    if (this.o.generation === 'legacy' && !satisfiesRtrVersions(b.client_version))
      // ResultResource.java@0932efe2 semver-checks client_version; the result is not stored.
      return [200, { error: ['ERROR_CLIENT_VERSION'] }];
    // The test is found by the token's first part (ResultServiceImpl.java:56).
    const uuid = typeof b.test_token === 'string' ? b.test_token.split('_')[0] : undefined;
    if (!uuid || ![...this.tests.keys()].some((k) => k === b.test_uuid))
      return [400, { error: ['test not found'] }];
    if (b.test_status === '1') {
      // A failed test: EmptyClientVersionException → HTTP 200 {"error":[]}, rolled back, nothing stored
      // (ResultServiceImpl.java:72,273-277; RtrAdvice.java:50-54) (F14).
      this.dropped.push(rec);
      return [200, { error: [] }];
    }
    // network_type must be > 0 (ResultServiceImpl.java:139-147).
    if (!(Number(b.network_type) > 0)) return [400, { error: ['network_type'] }];
    this.results.push(rec);
    return [200, { error: [] }];
  }
}

export async function startOperator(o: OperatorOptions): Promise<OperatorStandIn> {
  const s = new OperatorStandIn(o);
  await s.start();
  return s;
}
