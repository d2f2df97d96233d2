import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bytesToBigInt,
  clientHello,
  clientProof,
  parseClientHello,
  redp1,
  serverConfirm,
  serverKey,
  verifier,
} from '../../src/btest/ecsrp5.js';

/**
 * The EC-SRP5 vector of specs/btest.md §5.4. A copy lives in test/fixtures so a checkout tests on its
 * own; where the shared folder sits beside the repo (CI), the copy must equal the original.
 */
const VECTOR = join(import.meta.dirname, '../fixtures/btest-ecsrp5-vector.txt');
const SHARED = join(import.meta.dirname, '../../../shared/fixtures/btest-ecsrp5-vector.txt');
const vec = Object.fromEntries(
  readFileSync(VECTOR, 'utf8')
    .split('\n')
    .filter((l) => l.includes(': '))
    // keys may contain ':' themselves ("SHA256(user:pass)"); values never contain ': '
    .map((l) => [l.slice(0, l.lastIndexOf(': ')).trim(), l.slice(l.lastIndexOf(': ') + 2).trim()]),
) as Record<string, string>;
const hex = (k: string) => Buffer.from(vec[k]!, 'hex');
const frame = (payload: Buffer) => Buffer.concat([Buffer.from([payload.length]), payload]).toString('hex');

describe('EC-SRP5 (specs/btest.md §5), the shared vector byte for byte', () => {
  it.runIf(existsSync(SHARED))('uses the same vector as ../shared/fixtures', () => {
    expect(readFileSync(VECTOR, 'utf8')).toBe(readFileSync(SHARED, 'utf8'));
  });

  const user = vec.username!;
  const pass = vec.password!;
  const salt = hex('salt');
  const sA = bytesToBigInt(hex('client_ephemeral_s_a'));
  const sB = bytesToBigInt(hex('server_ephemeral_s_b'));

  it('verifier i and x_γ', () => {
    const v = verifier(user, pass, salt);
    expect(v.i.toString(16).padStart(64, '0')).toBe(vec['validator_i = SHA256(salt||SHA256(user:pass))']);
    expect(v.xGamma.toString('hex')).toBe(vec['x_gamma (Montgomery x of i*G)']);
  });

  it('the four messages and both confirmations', () => {
    const hello = clientHello(user, sA);
    expect(frame(hello.payload)).toBe(vec['MSG1 wire']);
    const v = verifier(user, pass, salt);
    const key = serverKey(parseClientHello(hello.payload), v, salt, sB);
    expect(frame(key.payload)).toBe(vec['MSG2 wire']);
    const proof = clientProof(hello.state, pass, key.payload);
    expect(proof.j.toString('hex')).toBe(vec['j = SHA256(x_w_a||x_w_b)']);
    expect(proof.z.toString('hex')).toBe(vec['z (shared Montgomery x)']);
    expect(frame(proof.cc)).toBe(vec['MSG3 wire']);
    const sc = serverConfirm(key.state, proof.cc);
    expect(sc && frame(sc)).toBe(vec['MSG4 wire']);
    expect(proof.expectSc.equals(sc!)).toBe(true);
  });

  it('a wrong password gives a proof the server rejects', () => {
    const hello = clientHello(user, sA);
    const key = serverKey(parseClientHello(hello.payload), verifier(user, pass, salt), salt, sB);
    const bad = clientProof(hello.state, 'not-secret', key.payload);
    expect(serverConfirm(key.state, bad.cc)).toBeUndefined();
  });

  it('redp1(x, 1) is the negation of redp1(x, 0)', () => {
    const x = hex('x_gamma (Montgomery x of i*G)');
    expect(redp1(x, 0).add(redp1(x, 1)).is0()).toBe(true);
  });
});
