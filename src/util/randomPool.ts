import { randomBytes } from 'node:crypto';

let pool: Buffer | undefined;

/**
 * A shared buffer of random bytes for payloads (RMBT asks for incompressible data). Grown on demand,
 * never shrunk; callers copy what they frame, so it is read-only in practice.
 */
export function randomPool(minBytes: number): Buffer {
  if (!pool || pool.length < minBytes) pool = randomBytes(Math.max(minBytes, 1024 * 1024));
  return pool;
}
