import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { ProbeError, toProbeError } from '../errors.js';
import type { TlsOptions } from '../rmbt/transport.js';

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
}

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
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) });
          } catch {
            reject(
              new ProbeError(
                'BP_ERR_RMBT_CONTROL',
                `HTTP ${res.statusCode} from ${u.host}${u.pathname} is not JSON: ${JSON.stringify(text.slice(0, 120))}`,
              ),
            );
          }
        });
        res.on('error', (err) => reject(toProbeError(err, 'BP_ERR_RMBT_CONTROL')));
      },
    );
    req.on('timeout', () =>
      req.destroy(new ProbeError('BP_ERR_TIMEOUT', `${u.host} did not answer within ${opts.timeoutMs} ms`)),
    );
    req.on('error', (err) => reject(toProbeError(err, 'BP_ERR_CONNECT')));
    req.end(data);
  });
}
