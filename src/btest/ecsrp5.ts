import { timingSafeEqual } from 'node:crypto';
import { Field, mod } from '@noble/curves/abstract/modular.js';
import { weierstrass } from '@noble/curves/abstract/weierstrass.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ProbeError } from '../errors.js';

/**
 * EC-SRP5 as RouterOS btest uses it (specs/btest.md §5): Curve25519 in short Weierstrass form with affine
 * points, Montgomery-x wire encoding plus a parity byte, SHA-256 everywhere, no encryption afterwards.
 * Field and point arithmetic come from @noble/curves; only the protocol's own steps are written here.
 */
const P = 2n ** 255n - 19n;
/** prime subgroup order r (§5.2) */
export const R = 2n ** 252n + 27742317777372353535851937790883648493n;
const A = 486662n;
const Fp = Field(P);
const A3 = Fp.div(A, 3n);
const WA = Fp.div(Fp.sub(3n, Fp.mul(A, A)), 3n);
const WB = Fp.div(Fp.sub(Fp.mul(2n, Fp.pow(A, 3n)), Fp.mul(9n, A)), 27n);

/** Montgomery x → Weierstrass point with the given y parity; undefined when x is not on the curve. */
function liftX(xm: bigint, parity: number): Point | undefined {
  const x = mod(xm, P);
  const y2 = Fp.add(Fp.add(Fp.pow(x, 3n), Fp.mul(A, Fp.sqr(x))), x);
  let y: bigint;
  try {
    y = Fp.sqrt(y2);
  } catch {
    return undefined;
  }
  if (Number(y & 1n) !== parity) y = Fp.neg(y);
  return Curve.fromAffine({ x: Fp.add(x, A3), y });
}

// Gx/Gy of lift_x(9, 0), computed once (the spec's Weierstrass X of G is 9 + A/3).
const G_Y = (() => {
  const y = Fp.sqrt(Fp.add(Fp.add(729n, Fp.mul(A, 81n)), 9n));
  return y & 1n ? Fp.neg(y) : y;
})();
const Curve = weierstrass({ p: P, n: R, h: 8n, a: WA, b: WB, Gx: Fp.add(9n, A3), Gy: G_Y });
type Point = InstanceType<typeof Curve>;
const G = Curve.BASE;

const be = (n: bigint): Buffer => Buffer.from(n.toString(16).padStart(64, '0'), 'hex');
const int = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).toString('hex') || '0'}`);
const H = (...parts: Uint8Array[]): Buffer => Buffer.from(sha256(Buffer.concat(parts)));

/** Wire encoding of a point: Montgomery x (32 bytes big-endian) and y parity. */
export function encodePoint(pt: Point): { x: Buffer; parity: number } {
  const { x, y } = pt.toAffine();
  return { x: be(Fp.sub(x, A3)), parity: Number(y & 1n) };
}

/** Scalar multiplication; every point multiplied here lies in the prime-order subgroup, so k mod r. */
function mul(pt: Point, k: bigint): Point {
  const s = mod(k, R);
  if (s === 0n) throw new ProbeError('BP_ERR_PROTOCOL', 'EC-SRP5: zero scalar');
  return pt.multiply(s);
}

/** redp1 (hash to curve, §5.2): lift SHA256(x) with x = SHA256(input), incrementing x until it lifts. */
export function redp1(input: Uint8Array, parity: number): Point {
  let x = int(H(input));
  for (let i = 0; i < 1000; i++) {
    const pt = liftX(int(H(be(x))), parity);
    if (pt) return pt;
    x = mod(x + 1n, 2n ** 256n);
  }
  throw new ProbeError('BP_ERR_PROTOCOL', 'EC-SRP5: redp1 found no point');
}

/** i = H(salt ‖ H(user ‖ ":" ‖ password)) and the verifier γ = [i]G (§5.3). */
export function verifier(user: string, password: string, salt: Uint8Array) {
  const i = int(H(salt, H(Buffer.from(`${user}:${password}`, 'utf8'))));
  const gamma = mul(G, i);
  return { i, gamma, xGamma: encodePoint(gamma).x };
}

export interface ClientState {
  user: string;
  sA: bigint;
  xWa: Buffer;
}

/** MSG1 payload: user, NUL, xm(W_a), parity. `sA` is for test vectors; normally random. */
export function clientHello(user: string, sA: bigint): { payload: Buffer; state: ClientState } {
  const Wa = encodePoint(mul(G, sA));
  return {
    payload: Buffer.concat([Buffer.from(user, 'utf8'), Buffer.from([0]), Wa.x, Buffer.from([Wa.parity])]),
    state: { user, sA, xWa: Wa.x },
  };
}

/** From MSG2 (xm(W_b), parity, salt): MSG3's confirmation and the server confirmation we expect. */
export function clientProof(
  st: ClientState,
  password: string,
  msg2: Buffer,
): { cc: Buffer; expectSc: Buffer; z: Buffer; j: Buffer } {
  if (msg2.length !== 49)
    throw new ProbeError(
      'BP_ERR_BTEST_AUTH',
      `EC-SRP5: server key message of ${msg2.length} bytes, expected 49`,
    );
  const xWb = msg2.subarray(0, 32);
  const Wb = liftX(int(xWb), msg2[32]! & 1);
  if (!Wb) throw new ProbeError('BP_ERR_BTEST_AUTH', 'EC-SRP5: the server key is not on the curve');
  const { i, xGamma } = verifier(st.user, password, msg2.subarray(33, 49));
  const j = H(st.xWa, xWb);
  // Adding redp1(x_γ, 1) removes the server's blinding redp1(x_γ, 0).
  const Z = mul(Wb.add(redp1(xGamma, 1)), i * int(j) + st.sA);
  const z = encodePoint(Z).x;
  const cc = H(j, z);
  return { cc, expectSc: H(j, cc, z), z, j };
}

export interface ServerState {
  sB: bigint;
  xWa: Buffer;
  xWb: Buffer;
  gamma: Point;
  Wa: Point;
}

/** Parses MSG1: the user name and the client key. */
export function parseClientHello(msg1: Buffer): { user: string; xWa: Buffer; parity: number } {
  const nul = msg1.indexOf(0);
  if (nul < 0 || msg1.length !== nul + 34)
    throw new ProbeError('BP_ERR_PROTOCOL', 'EC-SRP5: malformed client hello');
  return {
    user: msg1.subarray(0, nul).toString('utf8'),
    xWa: Buffer.from(msg1.subarray(nul + 1, nul + 33)),
    parity: msg1[nul + 33]! & 1,
  };
}

/** MSG2 payload for a known user: W_b = [s_b]G + redp1(x_γ, 0), its parity, the salt. */
export function serverKey(
  hello: { xWa: Buffer; parity: number },
  v: { gamma: Point; xGamma: Buffer },
  salt: Buffer,
  sB: bigint,
) {
  const Wa = liftX(int(hello.xWa), hello.parity);
  if (!Wa) throw new ProbeError('BP_ERR_BTEST_AUTH', 'EC-SRP5: the client key is not on the curve');
  const Wb = encodePoint(mul(G, sB).add(redp1(v.xGamma, 0)));
  return {
    payload: Buffer.concat([Wb.x, Buffer.from([Wb.parity]), salt]),
    state: { sB, xWa: hello.xWa, xWb: Wb.x, gamma: v.gamma, Wa } satisfies ServerState,
  };
}

/** Checks MSG3; returns MSG4's payload, or undefined when the client's proof is wrong. */
export function serverConfirm(st: ServerState, cc: Buffer): Buffer | undefined {
  const j = H(st.xWa, st.xWb);
  const Z = mul(st.Wa.add(mul(st.gamma, int(j))), st.sB);
  const z = encodePoint(Z).x;
  const want = H(j, z);
  if (cc.length !== 32 || !timingSafeEqual(cc, want)) return undefined;
  return H(j, cc, z);
}

export { int as bytesToBigInt };
