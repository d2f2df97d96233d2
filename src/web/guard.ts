import { isIP } from 'node:net';
import { hostname } from 'node:os';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Browser-facing guards of the page and API:
 * - Host allow-list against DNS rebinding: a page on evil.example whose name now resolves to us must
 *   not read the API. IP literals cannot be rebound, so any IP is fine; names must be ours.
 * - State-changing requests (anything but GET/HEAD) only as JSON and only from our own origin: a
 *   "simple" cross-site form or fetch cannot send `Content-Type: application/json` without a CORS
 *   preflight, which we never grant; `Sec-Fetch-Site` (or `Origin`) tells us where it came from.
 * - Ingress's X-Ingress-Path only in the Supervisor's form.
 */

/** The Supervisor's ingress prefix: `/api/hassio_ingress/<token>` (specs/ha-addon.md §5). */
const INGRESS_PATH = /^\/api\/hassio_ingress\/[A-Za-z0-9_-]{1,256}\/?$/;

export function ingressBase(header: unknown, ingress: boolean): string {
  if (!ingress || typeof header !== 'string' || !INGRESS_PATH.test(header)) return './';
  return `${header.replace(/\/$/, '')}/`;
}

/** The host name of a Host header, without port and brackets, lower case; '' when absent/unparsable. */
export function hostOf(header: string | undefined): string {
  if (!header) return '';
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(1, end) : '';
  }
  const colon = h.lastIndexOf(':');
  // one colon: host:port; more than one without brackets is a bare IPv6 address (not valid in Host)
  return colon >= 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

export function allowedHosts(extra: readonly string[], bind: string): Set<string> {
  const me = hostname().toLowerCase();
  const names = ['localhost', me, `${me}.local`, bind.toLowerCase(), ...extra.map((x) => x.toLowerCase())];
  return new Set(names.filter(Boolean));
}

export function hostAllowed(host: string, allowed: ReadonlySet<string>): boolean {
  if (host === '') return true; // HTTP/1.0 without Host: nothing a browser sends
  if (isIP(host)) return true;
  return allowed.has(host) || host.endsWith('.localhost');
}

/** A same-origin verdict for a state-changing request, or the reason it is refused. */
export function crossSiteReason(req: FastifyRequest): string | undefined {
  const type = String(req.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();
  if (type !== 'application/json')
    return 'state-changing requests must be sent as Content-Type: application/json';
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string') {
    // "none": typed by the user (not a fetch); "same-origin": our own page
    if (site !== 'same-origin' && site !== 'none')
      return `cross-site request refused (Sec-Fetch-Site: ${site})`;
    return undefined;
  }
  const origin = req.headers.origin;
  if (typeof origin === 'string' && origin !== 'null') {
    let o: URL;
    try {
      o = new URL(origin);
    } catch {
      return 'cross-site request refused (unparsable Origin)';
    }
    const hosts = [req.headers.host, req.headers['x-forwarded-host']]
      .filter((x): x is string => typeof x === 'string')
      .map((x) => x.toLowerCase());
    if (!hosts.includes(o.host.toLowerCase())) return `cross-site request refused (Origin: ${o.origin})`;
  } else if (origin === 'null') return 'cross-site request refused (Origin: null)';
  return undefined;
}

export interface GuardOptions {
  ingress: boolean;
  hosts: ReadonlySet<string>;
}

export function guard(o: GuardOptions) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    // Behind ingress only the Supervisor connects (checked by access.ts), and it sets Host itself.
    if (!o.ingress && !hostAllowed(hostOf(req.headers.host), o.hosts)) {
      await reply.code(421).send({
        error: 'misdirected',
        message: "this host name is not one of the probe's (add it to web.allowed_hosts)",
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const why = crossSiteReason(req);
      if (why) await reply.code(403).send({ error: 'forbidden', message: why });
    }
  };
}

/**
 * Content-Security-Policy of the page (served by @fastify/helmet): our own files only; uPlot sets
 * inline styles through the CSSOM (allowed), the page has no inline script. `frame-ancestors 'self'`:
 * HA shows the ingress page in a frame of its own origin, which is the page's origin too; nothing else
 * may frame it. No upgrade-insecure-requests: a standalone page is plain HTTP on the LAN.
 */
export const CSP_DIRECTIVES = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  fontSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'self'"],
  formAction: ["'self'"],
  frameAncestors: ["'self'"],
};
