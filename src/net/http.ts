import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { ProbeError, toProbeError } from '../errors.js';
import type { TlsOptions } from './tls.js';

/** Largest JSON answer we read from a control server; more is a protocol error, not unbounded memory. */
const MAX_BODY = 2 * 1024 * 1024;

export interface PostOptions {
  tls: TlsOptions;
  timeoutMs: number;
  signal?: AbortSignal;
  /** connect over this IP family only (the measurement's, so a v2 token is bound to the right address) */
  family?: 4 | 6;
  /** send from this local address (the measurement's source_address) */
  localAddress?: string;
  /** extra request headers (e.g. a Specure tenant header) */
  headers?: Readonly<Record<string, string>>;
  /** sees each request and its answer (`--debug-control`); secrets are the callee's to mask */
  onExchange?: (e: HttpExchange) => void;
}

export type HttpExchange =
  | { kind: 'request'; method: 'POST'; url: string; headers: Record<string, string>; body: unknown }
  | { kind: 'answer'; url: string; status: number; ms: number; body: unknown }
  | { kind: 'error'; url: string; ms: number; code: string; message: string };

/** POSTs JSON and parses the JSON answer, with a timeout and TLS verification on unless told otherwise. */
export function postJson(
  url: string,
  body: unknown,
  opts: PostOptions,
): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      reject(new ProbeError('BP_ERR_CONFIG', `not a URL: ${url}`));
      return;
    }
    const data = Buffer.from(JSON.stringify(body));
    const mod = u.protocol === 'https:' ? https : http;
    const t0 = Date.now();
    const see = (e: HttpExchange) => {
      try {
        opts.onExchange?.(e);
      } catch {
        // a debug printer must not break the request
      }
    };
    see({ kind: 'request', method: 'POST', url, headers: { ...opts.headers }, body });
    const fail = (err: ProbeError) => {
      see({ kind: 'error', url, ms: Date.now() - t0, code: err.code, message: err.message });
      reject(err);
    };
    const req = mod.request(
      u,
      {
        method: 'POST',
        headers: {
          ...opts.headers,
          'content-type': 'application/json',
          'content-length': data.length,
          accept: 'application/json',
        },
        timeout: opts.timeoutMs,
        ...(opts.family ? { family: opts.family } : {}),
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
        ...(u.protocol === 'https:'
          ? {
              rejectUnauthorized: !opts.tls.insecure,
              ...(opts.tls.ca ? { ca: [...tls.rootCertificates, String(opts.tls.ca)] } : {}),
            }
          : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      (res) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          size += d.length;
          if (size > MAX_BODY) {
            req.destroy(
              new ProbeError('BP_ERR_RMBT_CONTROL', `answer from ${u.host} larger than ${MAX_BODY} bytes`),
            );
          } else parts.push(d);
        });
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            fail(
              new ProbeError(
                'BP_ERR_RMBT_CONTROL',
                `HTTP ${res.statusCode} from ${u.host}${u.pathname} is not JSON: ${JSON.stringify(text.slice(0, 120))}`,
              ),
            );
            return;
          }
          see({ kind: 'answer', url, status: res.statusCode ?? 0, ms: Date.now() - t0, body: json });
          resolve({ status: res.statusCode ?? 0, json });
        });
        res.on('error', (err) => fail(toProbeError(err, 'BP_ERR_RMBT_CONTROL')));
      },
    );
    req.on('timeout', () =>
      req.destroy(new ProbeError('BP_ERR_TIMEOUT', `${u.host} did not answer within ${opts.timeoutMs} ms`)),
    );
    req.on('error', (err) => fail(toProbeError(err, 'BP_ERR_CONNECT')));
    req.end(data);
  });
}

/** Keys whose values are secrets in a control exchange: tokens, keys, passwords, signatures. */
const SECRET_KEY = /token|secret|password|passwd|key|hmac|signature|authorization|cookie/i;

/**
 * A copy of a request or answer body with its secrets masked (`--debug-control`): the value of every
 * key that names a secret becomes "***" with its length, at any depth.
 */
export function maskSecrets(v: unknown, depth = 0): unknown {
  if (depth > 20) return '…';
  if (Array.isArray(v)) return v.map((x) => maskSecrets(x, depth + 1));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>))
      out[k] =
        SECRET_KEY.test(k) && x !== null && x !== undefined && typeof x !== 'boolean'
          ? `***(${String(x).length})`
          : maskSecrets(x, depth + 1);
    return out;
  }
  return v;
}
