import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProbeError } from '../errors.js';

/** Where the generated page/API token lives: in data_dir, readable by its owner only. */
export const TOKEN_FILE = 'web-token';

/**
 * The page's generated API token: made on the first start that needs it, kept in
 * data_dir so it survives restarts. `created` says whether this start made it (then it is printed once).
 */
export function ensureWebToken(dataDir: string): { token: string; path: string; created: boolean } {
  const path = join(dataDir, TOKEN_FILE);
  try {
    const token = readFileSync(path, 'utf8').trim().split(/\s+/)[0] ?? '';
    if (token.length >= 16) return { token, path, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new ProbeError('BP_ERR_STORE', `${path}: ${(err as Error).message}`);
  }
  const token = randomBytes(24).toString('base64url');
  try {
    writeFileSync(path, `${token}\n`, { mode: 0o600 });
    chmodSync(path, 0o600);
  } catch (err) {
    throw new ProbeError('BP_ERR_STORE', `cannot keep the page token in ${path}: ${(err as Error).message}`);
  }
  return { token, path, created: true };
}

/** Whether an address is loopback only (127.0.0.0/8, ::1, localhost). */
export function isLoopbackBind(bind: string): boolean {
  const b = bind.toLowerCase();
  return b === 'localhost' || b === '::1' || /^127\.\d+\.\d+\.\d+$/.test(b) || b === '::ffff:127.0.0.1';
}
