import { describe, expect, it } from 'vitest';
import { cipherOrder, cpuHasAes, nodeCiphers } from '../../src/engine/tls.js';

describe('cipher order by the CPU', () => {
  it('reads the AES flag from x86 flags and ARM Features lines', () => {
    expect(cpuHasAes('processor\t: 0\nflags\t\t: fpu vme sse2 aes avx2 sha_ni\n')).toBe(true);
    // a Raspberry Pi 4 (Cortex-A72 without the crypto extensions)
    expect(cpuHasAes('processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n')).toBe(false);
    // a Pi 5 (Cortex-A76) has them
    expect(cpuHasAes('Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n')).toBe(true);
    // "vaes" alone is not "aes"
    expect(cpuHasAes('flags\t: sse2 vaes\n')).toBe(false);
    expect(cpuHasAes('nothing here\n')).toBeUndefined();
  });

  it('puts the preferred AEAD first in both the TLS 1.3 suites and the TLS 1.2 list', () => {
    const chacha = cipherOrder({ BANDWIDTH_PROBE_TLS_PREFER: 'chacha' });
    expect(chacha.prefer).toBe('chacha');
    expect(chacha.suites.split(':')[0]).toBe('TLS_CHACHA20_POLY1305_SHA256');
    expect(chacha.list.split(':')[0]).toBe('ECDHE-ECDSA-CHACHA20-POLY1305');
    const aes = cipherOrder({ BANDWIDTH_PROBE_TLS_PREFER: 'aes' });
    expect(aes.suites.split(':')[0]).toBe('TLS_AES_128_GCM_SHA256');
    expect(aes.list.split(':')[0]).toBe('ECDHE-ECDSA-AES128-GCM-SHA256');
    // every suite stays on offer, each once
    expect(new Set(aes.suites.split(':'))).toEqual(new Set(chacha.suites.split(':')));
    expect(aes.list.split(':').length).toBe(new Set(aes.list.split(':')).size);
    // Node's `ciphers` option gets the same order
    expect(nodeCiphers(chacha).startsWith('TLS_CHACHA20_POLY1305_SHA256:')).toBe(true);
  });

  it('without a setting, the order follows what each AEAD costs in this process and says so', () => {
    const o = cipherOrder({});
    if (cpuHasAes() === false) {
      expect(o).toMatchObject({ prefer: 'chacha', reason: 'cpu has no aes' });
      return;
    }
    expect(o.reason).toMatch(/AES-128-GCM \d+ Mbit\/s, ChaCha20-Poly1305 \d+ Mbit\/s/);
    const [a, c] = [...o.reason.matchAll(/(\d+) Mbit\/s/g)].map((m) => Number(m[1]));
    // ChaCha20 only when clearly faster (rounded figures: allow the rounding at the margin)
    if (o.prefer === 'chacha') expect(c!).toBeGreaterThan(a! * 1.49);
    else expect(c!).toBeLessThanOrEqual(a! * 1.51);
  });
});
