import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Who may use the page (specs/ha-addon.md §5). Behind ingress only the Supervisor connects (172.30.32.2,
 * HA has authenticated the user already); standalone, optional basic auth for people and a bearer token
 * for API clients.
 */
export const SUPERVISOR_IP = '172.30.32.2';

export interface AccessRules {
  ingress: boolean;
  username?: string;
  password?: string;
  apiToken?: string;
  /** the API token also opens the page as a basic-auth password (any user name): the generated token */
  tokenAsPassword?: boolean;
  /** failed attempts per address and window before 429; default 10 per 60 s */
  throttle?: { failures: number; windowMs: number };
}

/**
 * Failed logins per peer address (3000 guesses in 2.9 s went unthrottled). Past the budget a
 * peer gets 429 until its window ends, right or wrong; the map is bounded (oldest entries dropped).
 */
export class AuthThrottle {
  private readonly fails = new Map<string, { n: number; since: number }>();
  constructor(
    private readonly failures = 10,
    private readonly windowMs = 60_000,
    private readonly maxPeers = 4096,
  ) {}

  /** Milliseconds the peer must still wait, or 0. */
  blockedFor(ip: string, now = Date.now()): number {
    const f = this.fails.get(ip);
    if (!f) return 0;
    if (now - f.since >= this.windowMs) {
      this.fails.delete(ip);
      return 0;
    }
    return f.n >= this.failures ? this.windowMs - (now - f.since) : 0;
  }

  fail(ip: string, now = Date.now()): void {
    const f = this.fails.get(ip);
    if (f && now - f.since < this.windowMs) f.n++;
    else {
      this.fails.delete(ip);
      if (this.fails.size >= this.maxPeers) this.fails.delete(this.fails.keys().next().value!);
      this.fails.set(ip, { n: 1, since: now });
    }
  }
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The peer address without an IPv4-mapped prefix. */
export function peerIp(req: FastifyRequest): string {
  return (req.socket.remoteAddress ?? req.ip ?? '').replace(/^::ffff:/, '');
}

export function checkAccess(rules: AccessRules) {
  const throttle = new AuthThrottle(rules.throttle?.failures, rules.throttle?.windowMs);
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    // The container's HEALTHCHECK asks from inside: loopback may read the bare health route.
    const ip = peerIp(req);
    if (req.url === '/healthz' && (ip === '127.0.0.1' || ip === '::1')) return;
    if (rules.ingress) {
      if (ip !== SUPERVISOR_IP) {
        await reply
          .code(403)
          .send({ error: 'forbidden', message: 'only Home Assistant ingress may open this page' });
      }
      return;
    }
    const userPass = rules.username !== undefined && rules.password !== undefined;
    const wantBasic = userPass || Boolean(rules.apiToken && rules.tokenAsPassword);
    if (!wantBasic && !rules.apiToken) return;
    const wait = throttle.blockedFor(ip);
    if (wait > 0) {
      await reply
        .code(429)
        .header('retry-after', String(Math.ceil(wait / 1000)))
        .send({ error: 'too_many_requests', message: 'too many failed logins from this address; wait' });
      return;
    }
    const auth = req.headers.authorization ?? '';
    if (rules.apiToken && auth.startsWith('Bearer ') && same(auth.slice(7).trim(), rules.apiToken)) return;
    if (wantBasic && auth.startsWith('Basic ')) {
      const text = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
      const i = text.indexOf(':');
      const user = i >= 0 ? text.slice(0, i) : '';
      const pass = i >= 0 ? text.slice(i + 1) : '';
      if (userPass && i > 0 && same(user, rules.username!) && same(pass, rules.password!)) return;
      if (rules.apiToken && rules.tokenAsPassword && i >= 0 && same(pass, rules.apiToken)) return;
    }
    // a request without any credentials is a browser's first try, not a guess
    if (auth) throttle.fail(ip);
    if (wantBasic) reply.header('www-authenticate', 'Basic realm="Bandwidth Probe", charset="UTF-8"');
    await reply.code(401).send({ error: 'unauthorized', message: 'credentials required' });
  };
}
