/**
 * TLS on both engines: the native engine's own OpenSSL sessions and Node's TLS must check
 * certificates alike, offer the same cipher order and fail the same coded ways, and TLS streams must
 * survive the hazards plain ones do (aborts, a peer that closes, a server that is not TLS) with no
 * descriptor left behind.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/types.js';
import type { RmbtEvent } from '../../src/rmbt/client.js';
import { measureRmbt } from '../../src/rmbt/measure.js';
import type { RunningRmbtServers } from '../../src/rmbt/serve.js';
import { clientSettings, ENGINES, startServers, tempDir } from '../helpers/rmbt.js';

interface CertFiles {
  cert: string;
  key: string;
}

/** A self-signed EC certificate for the given names and IPs, valid now unless `expired`. */
async function makeCert(names: string[], ips: string[], expired = false): Promise<CertFiles> {
  const dir = tempDir();
  const day = 86_400_000;
  const pems = await generate([{ name: 'commonName', value: names[0] ?? ips[0] ?? 'x' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    ...(expired
      ? { notBeforeDate: new Date(Date.now() - 3 * day), notAfterDate: new Date(Date.now() - day) }
      : {}),
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          ...names.map((value) => ({ type: 2 as const, value })),
          ...ips.map((ip) => ({ type: 7 as const, ip })),
        ],
      },
    ],
  });
  const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  writeFileSync(files.cert, pems.cert);
  writeFileSync(files.key, pems.private);
  return files;
}

const fdCount = () => readdirSync('/proc/self/fd').length;

/** Waits (bounded) until this process has no more descriptors than `before`. */
async function fdsBackTo(before: number): Promise<number> {
  let now = fdCount();
  for (let i = 0; i < 40 && now > before; i++) {
    await new Promise((r) => setTimeout(r, 50));
    now = fdCount();
  }
  return now;
}

describe.each(ENGINES)('TLS, $name engine client', ({ name, make }) => {
  let engine: Engine;
  const running: RunningRmbtServers[] = [];
  const serve = async (cert?: CertFiles) => {
    // The server on the native engine: its TLS ports are native sessions too.
    const { servers, settings } = await startServers(
      ENGINES[1]!.make(),
      cert ? { cert: cert.cert, cert_key: cert.key, test_duration: '1' } : {},
    );
    running.push(servers);
    return { servers, settings, port: servers.measurement.portOf('http', true)! };
  };
  beforeAll(() => {
    engine = make();
  });
  afterAll(async () => {
    for (const s of running) await s.close();
  });
  afterEach(() => {
    delete process.env.BANDWIDTH_PROBE_TLS_PREFER;
  });

  const run = (
    target: { host: string; port: number; key: string },
    over: Record<string, string> = {},
    extra: { signal?: AbortSignal; onEvent?: (e: RmbtEvent) => void } = {},
  ) =>
    measureRmbt(
      clientSettings({
        server: `${target.host}:${target.port}`,
        key: target.key,
        transport: 'https',
        threads: '1',
        ...over,
      }),
      { engine, general: { log_level: 'silent' } as never, ...extra },
    );

  it('certificates: self-signed refused without tls_ca, trusted with it; a wrong name and an expired one are refused, and the error says why', async () => {
    const goodCert = await makeCert(['localhost'], ['127.0.0.1']);
    const good = await serve(goodCert);
    const key = good.servers.keys[0]!;
    const verify = { measurement_tls_verify: 'true' };
    const bare = await run({ host: '127.0.0.1', port: good.port, key }, verify);
    expect(bare.status).toBe('failed');
    expect(bare.error?.code).toBe('BP_ERR_TLS');
    expect(bare.error?.message).toMatch(/self.signed/i);

    const trusted = await run(
      { host: '127.0.0.1', port: good.port, key },
      { ...verify, tls_ca: goodCert.cert },
    );
    expect(trusted.status, JSON.stringify(trusted.error)).toBe('ok');
    expect(trusted.engine).toBe(name);
    expect(trusted.server.tls?.version).toMatch(/^TLSv1\.[23]$/);

    const other = await makeCert(['probe.invalid'], []);
    const wrong = await serve(other);
    const misnamed = await run(
      { host: 'localhost', port: wrong.port, key: wrong.servers.keys[0]! },
      { ...verify, tls_ca: other.cert },
    );
    expect(misnamed.status).toBe('failed');
    expect(misnamed.error?.code).toBe('BP_ERR_TLS');
    expect(misnamed.error?.message).toMatch(/localhost/);

    const old = await makeCert(['localhost'], ['127.0.0.1'], true);
    const expired = await serve(old);
    const late = await run(
      { host: '127.0.0.1', port: expired.port, key: expired.servers.keys[0]! },
      { ...verify, tls_ca: old.cert },
    );
    expect(late.status).toBe('failed');
    expect(late.error?.code).toBe('BP_ERR_TLS');
    expect(late.error?.message).toMatch(/expired/i);

    // Not verified (the default for measurement servers, F5): the expired one measures.
    const unchecked = await run({ host: '127.0.0.1', port: expired.port, key: expired.servers.keys[0]! });
    expect(unchecked.status, JSON.stringify(unchecked.error)).toBe('ok');
  });

  it('the cipher order: AES-GCM or ChaCha20-Poly1305 first as asked, and the result names what was negotiated', async () => {
    const s = await serve();
    const target = { host: '127.0.0.1', port: s.port, key: s.servers.keys[0]! };
    process.env.BANDWIDTH_PROBE_TLS_PREFER = 'chacha';
    const chacha = await run(target);
    expect(chacha.status, JSON.stringify(chacha.error)).toBe('ok');
    expect(chacha.server.tls).toEqual({ version: 'TLSv1.3', cipher: 'TLS_CHACHA20_POLY1305_SHA256' });
    process.env.BANDWIDTH_PROBE_TLS_PREFER = 'aes';
    const aes = await run(target);
    expect(aes.server.tls).toEqual({ version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' });
  });

  it('hazards: a silent server aborted mid-handshake, garbage instead of a ServerHello, aborts mid-download and mid-upload, a server that closes; fds back every time', async () => {
    const before = fdCount();
    // A TCP server that never answers the ClientHello, and one that answers it with garbage.
    const socks = new Set<net.Socket>();
    const silent = net.createServer((c) => {
      socks.add(c);
      c.on('error', () => {});
    });
    const garbage = net.createServer((c) => {
      socks.add(c);
      c.on('error', () => {});
      c.once('data', () => c.write(Buffer.from('\x16\x03\x03\x00\x05garbage that is not a ServerHello')));
    });
    await Promise.all([silent, garbage].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
    const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;
    try {
      const ac = new AbortController();
      const t0 = Date.now();
      setTimeout(() => ac.abort(), 300);
      const mid = await run({ host: '127.0.0.1', port: portOf(silent), key: 'k' }, {}, { signal: ac.signal });
      expect(mid.status).toBe('aborted');
      expect(mid.error?.code).toBe('BP_ERR_ABORTED');
      expect(Date.now() - t0).toBeLessThan(2500);

      const bad = await run({ host: '127.0.0.1', port: portOf(garbage), key: 'k' });
      expect(bad.status).toBe('failed');
      expect(bad.error?.code).toBe('BP_ERR_TLS');
    } finally {
      for (const c of socks) c.destroy();
      await Promise.all([silent, garbage].map((s) => new Promise((r) => s.close(r))));
    }

    const s = await serve();
    const target = { host: '127.0.0.1', port: s.port, key: s.servers.keys[0]! };
    for (const phase of ['download', 'upload'] as const) {
      const ac = new AbortController();
      const r = await run(
        target,
        { threads: '2', duration: '3' },
        {
          signal: ac.signal,
          onEvent: (e) => e.type === 'phase' && e.phase === phase && setTimeout(() => ac.abort(), 300),
        },
      );
      expect(r.status, phase).toBe('aborted');
      expect(r.error?.code, phase).toBe('BP_ERR_ABORTED');
      // What was measured before the abort is kept.
      if (phase === 'upload') expect(r.download?.mbps).toBeGreaterThan(0);
    }
    // The server goes away in the middle of a download.
    const closing = await serve();
    const cut = await run(
      { host: '127.0.0.1', port: closing.port, key: closing.servers.keys[0]! },
      { threads: '2', duration: '3' },
      {
        onEvent: (e) =>
          e.type === 'phase' && e.phase === 'download' && setTimeout(() => void closing.servers.close(), 300),
      },
    );
    expect(cut.status).toBe('failed');
    expect(cut.error?.code).toBe('BP_ERR_PEER_CLOSED');
    // And the server still measures afterwards (a new run against the first one).
    const after = await run(target);
    expect(after.status, JSON.stringify(after.error)).toBe('ok');
    await s.servers.close();
    running.splice(running.indexOf(s.servers), 1);
    running.splice(running.indexOf(closing.servers), 1);
    expect(await fdsBackTo(before)).toBeLessThanOrEqual(before);
  });
});
