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
    const wantBasic = rules.username !== undefined && rules.password !== undefined;
    if (!wantBasic && !rules.apiToken) return;
    const auth = req.headers.authorization ?? '';
    if (rules.apiToken && auth.startsWith('Bearer ') && same(auth.slice(7).trim(), rules.apiToken)) return;
    if (wantBasic && auth.startsWith('Basic ')) {
      const text = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
      const i = text.indexOf(':');
      if (i > 0 && same(text.slice(0, i), rules.username!) && same(text.slice(i + 1), rules.password!))
        return;
    }
    if (wantBasic) reply.header('www-authenticate', 'Basic realm="Bandwidth Probe", charset="UTF-8"');
    await reply.code(401).send({ error: 'unauthorized', message: 'credentials required' });
  };
}
