import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Settings } from '../../src/config/settings.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import type { Engine } from '../../src/engine/types.js';
import type { RunResult } from '../../src/measure/result.js';
import { Channel } from '../../src/net/channel.js';
import type { RmbtEvent } from '../../src/rmbt/client.js';
import { measureRmbt } from '../../src/rmbt/measure.js';
import type { RunningRmbtServers } from '../../src/rmbt/serve.js';
import { makeToken } from '../../src/rmbt/token.js';
import { TRANSPORTS, type Transport, usesTls } from '../../src/rmbt/transport.js';
import { clientSettings, ENGINES, fakeServer, startServers, tempDir } from '../helpers/rmbt.js';

function portFor(servers: RunningRmbtServers, t: Transport): number {
  const m = servers.measurement;
  const port = m.portOf(t === 'plain' || t === 'tls' ? 'plain' : 'http', usesTls(t));
  return port!;
}

function expectConsistent(r: RunResult, threads: number) {
  expect(r.error).toBeUndefined();
  expect(r.status).toBe('ok');
  for (const d of [r.download!, r.upload!]) {
    expect(d.streams).toBe(threads);
    expect(d.mbps).toBeGreaterThan(0);
    // t* rule: rate is bytes at t* over t*
    expect(d.mbps).toBeCloseTo((d.bytes * 8) / d.duration_ms / 1000, 1);
    expect(d.series.length).toBeGreaterThan(0);
  }
  // Download framing: every stream stops exactly at a chunk boundary (the 0xFF chunk), nothing lost or extra.
  for (const s of r.download!.per_stream) expect(s.bytes % r.download!.chunk_size!).toBe(0);
  // Upload: the server's final count per stream equals what we sent.
  for (const s of r.upload!.per_stream) expect(s.bytes % r.upload!.chunk_size!).toBe(0);
  expect(r.upload!.timing).toBe('server');
  expect(r.ping!.count).toBeGreaterThanOrEqual(5);
  expect(r.ping!.median_ms).toBeGreaterThan(0);
}

describe.each(ENGINES)('RMBT on loopback, $name engine', ({ name, make }) => {
  let engine: Engine;
  let servers: RunningRmbtServers;
  let settings: Settings;
  let key: string;

  beforeAll(async () => {
    engine = make();
    // The control server hands out 2 s tests (its default 7 s made each control-server test take
    // 29.5 s of its 30 s budget, waiting, not computing).
    ({ servers, settings } = await startServers(engine, { test_duration: '2', test_pings: '5' }));
    key = servers.keys[0]!;
  });
  afterAll(async () => {
    await servers.close();
  });

  const direct = (
    transport: Transport,
    over: Record<string, string> = {},
    onEvent?: (e: RmbtEvent) => void,
  ) =>
    measureRmbt(
      clientSettings({
        server: `127.0.0.1:${portFor(servers, transport)}`,
        key,
        transport,
        tls_insecure: 'true',
        ...over,
      }),
      { engine, general: settings.general, ...(onEvent ? { onEvent } : {}) },
    );

  for (const transport of TRANSPORTS) {
    for (const threads of [1, 3]) {
      it(`${transport}, ${threads} thread(s): full run, consistent figures, live progress`, async () => {
        const live = { download: [] as number[], upload: [] as number[] };
        const r = await direct(transport, { threads: String(threads) }, (e) => {
          if (e.type === 'progress') live[e.phase].push(e.mbps);
        });
        expectConsistent(r, threads);
        // Live figures on every transport and engine (TLS ticks were all 0 on the native engine,
        // whose js fallback kept its own counters). Each direction lasts 1 s, ticks come every 250 ms.
        for (const dir of ['download', 'upload'] as const) {
          expect(live[dir].length, dir).toBeGreaterThanOrEqual(2);
          expect(Math.max(...live[dir]), dir).toBeGreaterThan(0);
          expect(live[dir].filter((x) => x > 0).length, dir).toBeGreaterThanOrEqual(live[dir].length - 1);
        }
        expect(r.server.transport).toBe(transport);
        // The native loop drives plain TCP and, with its own OpenSSL sessions, TLS; the result
        // says which engine moved the bytes, and a TLS run names what was negotiated.
        expect(r.engine).toBe(name);
        if (usesTls(transport)) {
          expect(r.server.tls?.version).toMatch(/^TLSv1\.[23]$/);
          expect(r.server.tls?.cipher).toMatch(/^TLS_/);
        } else expect(r.server.tls).toBeUndefined();
        const c = r.connections!;
        expect(c).toHaveLength(threads);
        expect(c.every((x) => (x.tls_ms !== undefined) === ['tls', 'https', 'wss'].includes(transport))).toBe(
          true,
        );
        expect(
          c.every((x) => (x.upgrade_ms !== undefined) === ['http', 'https', 'ws', 'wss'].includes(transport)),
        ).toBe(true);
      });
    }
  }

  it('by size (bytes, direct mode): GETCHUNKS and a counted PUT move the size each way', async () => {
    const size = 40_000_000;
    const r = await direct('http', { bytes: String(size), threads: '2', duration: '20' });
    expect(r.error).toBeUndefined();
    expect(r.size_limit).toEqual({ bytes: size, reached: true });
    for (const d of [r.download!, r.upload!]) {
      // whole chunks per thread: the size rounded up by less than one chunk per thread
      expect(d.bytes_total).toBeGreaterThanOrEqual(size);
      expect(d.bytes_total).toBeLessThan(size + 2 * 4 * 1024 * 1024);
      expect(d.mbps).toBeGreaterThan(0);
    }
    // a control server hands out a timed test
    const control_url = `http://127.0.0.1:${servers.control!.port}/RMBTControlServer`;
    const c = await measureRmbt(clientSettings({ control_url, tls_ca: servers.certPath!, bytes: '1000' }), {
      engine,
      general: { ...settings.general, data_dir: tempDir() },
    });
    expect(c.error?.code).toBe('BP_ERR_CONFIG');
  });

  it('through the control server: registers, measures, submits; the submission matches the result', async () => {
    const dataDir = tempDir();
    const control_url = `http://127.0.0.1:${servers.control!.port}/RMBTControlServer`;
    const s = clientSettings({ control_url, tls_ca: servers.certPath! });
    const r = await measureRmbt(s, { engine, general: { ...settings.general, data_dir: dataDir } });
    expectConsistent(r, r.download!.streams);
    expect(r.server.transport).toBe('https');
    expect(r.rmbt!.submitted).toBe(true);
    const stored = servers.control!.results.find((x) => x.testUuid === r.rmbt!.test_uuid)!.result!;
    expect(stored.test_speed_download).toBe(Math.round(r.download!.mbps * 1000));
    expect(stored.test_speed_upload).toBe(Math.round(r.upload!.mbps * 1000));
    expect(stored.test_nsec_download).toBe(Math.round(r.download!.duration_ms * 1e6));
    expect(stored.client_uuid).toBe(r.rmbt!.client_uuid);
    expect((stored.pings as unknown[]).length).toBe(r.ping!.count);
    const detail = stored.speed_detail as {
      direction: string;
      thread: number;
      time: number;
      bytes: number;
    }[];
    expect(detail.filter((d) => d.direction === 'upload' && d.time === 0)).toHaveLength(r.upload!.streams);
    // The client UUID is kept per control server and reused.
    const uuids = JSON.parse(readFileSync(join(dataDir, 'rmbt-client-uuid.json'), 'utf8')) as Record<
      string,
      { uuid: string }
    >;
    expect(uuids[control_url]!.uuid).toBe(r.rmbt!.client_uuid);
    const again = await measureRmbt(
      clientSettings({ control_url, tls_ca: servers.certPath!, submit_results: 'false' }),
      {
        engine,
        general: { ...settings.general, data_dir: dataDir },
      },
    );
    expect(again.rmbt!.client_uuid).toBe(r.rmbt!.client_uuid);
    expect(again.rmbt!.submitted).toBe(false);
  });

  it('control server: each transport wish gets its server type', async () => {
    const control_url = `http://127.0.0.1:${servers.control!.port}/RMBTControlServer`;
    for (const [wish, want] of [
      ['ws', 'wss'],
      ['plain', 'tls'],
    ] as const) {
      const r = await measureRmbt(
        clientSettings({ control_url, tls_ca: servers.certPath!, transport: wish, threads: '1' }),
        {
          engine,
          general: { ...settings.general, data_dir: tempDir() },
        },
      );
      expect(r.status).toBe('ok');
      expect(r.server.transport).toBe(want);
    }
  });

  it('measurement-server TLS is not verified by default (F5); measurement_tls_verify fails a self-signed one', async () => {
    const off = await direct('https', { tls_insecure: 'false', threads: '1' });
    expect(off.status).toBe('ok');
    const r = await direct('https', { tls_insecure: 'false', measurement_tls_verify: 'true' });
    expect(r.status).toBe('failed');
    expect(r.error!.code).toBe('BP_ERR_TLS');
    const ca = await direct('https', {
      measurement_tls_verify: 'true',
      tls_ca: servers.certPath!,
      threads: '1',
    });
    expect(ca.status).toBe('ok');
  });

  it('wrong key → BP_ERR_RMBT_TOKEN, and the server keeps serving', async () => {
    const r = await direct('http', { key: 'not-the-key' });
    expect(r.status).toBe('failed');
    expect(r.error!.code).toBe('BP_ERR_RMBT_TOKEN');
    const ok = await direct('http', { threads: '1' });
    expect(ok.status).toBe('ok');
  });

  it('server refuses a chunk size out of range with ERR and closes', async () => {
    const sock = net.connect(portFor(servers, 'plain'), '127.0.0.1');
    const ch = new Channel(sock);
    expect(await ch.readLine(2000)).toBe('RMBTv1.3.5');
    expect(await ch.readLine(2000)).toBe('ACCEPT TOKEN QUIT');
    ch.writeLine(`TOKEN ${makeToken(key)}`);
    expect(await ch.readLine(2000)).toBe('OK');
    expect(await ch.readLine(2000)).toBe('CHUNKSIZE 4096 4096 4194304');
    expect(await ch.readLine(2000)).toMatch(/^ACCEPT GETCHUNKS/);
    ch.writeLine('GETTIME 1 1000');
    expect(await ch.readLine(2000)).toBe('ERR');
    await expect(ch.readLine(2000)).rejects.toMatchObject({ code: 'BP_ERR_PEER_CLOSED' });
  });

  it('server answers like RMBTD: unknown command → ERR then ACCEPT; GETCHUNKS n chunks, last ends in 0xFF', async () => {
    const sock = net.connect(portFor(servers, 'plain'), '127.0.0.1');
    const ch = new Channel(sock);
    for (let i = 0; i < 2; i++) await ch.readLine(2000);
    ch.writeLine(`TOKEN ${makeToken(key)}`);
    for (let i = 0; i < 3; i++) await ch.readLine(2000);
    ch.writeLine('FOO');
    expect(await ch.readLine(2000)).toBe('ERR');
    expect(await ch.readLine(2000)).toMatch(/^ACCEPT GETCHUNKS GETTIME PUT PUTNORESULT PING QUIT$/);
    ch.writeLine('GETCHUNKS 3 8192');
    const data = await ch.readBytes(3 * 8192, 2000);
    expect([data[8191], data[16383], data[24575]]).toEqual([0x00, 0x00, 0xff]);
    ch.writeLine('OK');
    expect(await ch.readLine(2000)).toMatch(/^TIME \d+$/);
    await ch.readLine(2000);
    ch.writeLine('QUIT');
    expect(await ch.readLine(2000)).toBe('BYE');
  });

  it('server closing mid-download → BP_ERR_PEER_CLOSED, no hang', async () => {
    const own = await startServers(engine);
    try {
      const m = own.servers.measurement;
      const r = await measureRmbt(
        clientSettings({
          server: `127.0.0.1:${m.portOf('http', false)}`,
          key: own.servers.keys[0]!,
          transport: 'http',
          duration: '3',
        }),
        {
          engine,
          general: own.settings.general,
          onEvent: (e) => {
            if (e.type === 'phase' && e.phase === 'download') setTimeout(() => void m.close(), 300);
          },
        },
      );
      expect(r.status).toBe('failed');
      expect(r.error!.code).toBe('BP_ERR_PEER_CLOSED');
      expect(r.ping!.count).toBeGreaterThan(0);
      expect(r.download).toBeUndefined();
    } finally {
      await own.servers.close();
    }
  });

  it('a server that stalls (sends nothing) → BP_ERR_STALLED after io_timeout', async () => {
    const fake = await fakeServer(() => {});
    try {
      const r = await measureRmbt(
        clientSettings({ server: `127.0.0.1:${fake.port}`, key: 'k', transport: 'plain', io_timeout: '1' }),
        {
          engine,
          general: settings.general,
        },
      );
      expect(r.status).toBe('failed');
      expect(r.error!.code).toBe('BP_ERR_STALLED');
    } finally {
      await fake.close();
    }
  });

  it('a server that drops the connection on a chunk-size argument → BP_ERR_RMBT_CHUNKSIZE', async () => {
    const fake = await fakeServer((line, sock) => {
      if (line.startsWith('GETCHUNKS')) sock.destroy();
    });
    try {
      const r = await measureRmbt(
        clientSettings({ server: `127.0.0.1:${fake.port}`, key: 'k', transport: 'plain', threads: '1' }),
        {
          engine,
          general: settings.general,
        },
      );
      expect(r.error!.code).toBe('BP_ERR_RMBT_CHUNKSIZE');
    } finally {
      await fake.close();
    }
  });

  it('ERR and a new ACCEPT to GETCHUNKS (RUSTD, outside its limits) → BP_ERR_RMBT_SERVER at once, not chunk data', async () => {
    const fake = await fakeServer((line, sock) => {
      if (line.startsWith('GETCHUNKS'))
        sock.write('ERR\nACCEPT GETCHUNKS GETTIME PUT PUTNORESULT PING QUIT\n');
    });
    try {
      const r = await measureRmbt(
        clientSettings({ server: `127.0.0.1:${fake.port}`, key: 'k', transport: 'plain', threads: '1' }),
        { engine, general: settings.general },
      );
      expect(r.error!.code).toBe('BP_ERR_RMBT_SERVER');
      // told from the answer itself (not inferred after io_timeout of silence)
      expect(r.error!.message).toContain('answered ERR to GETCHUNKS');
    } finally {
      await fake.close();
    }
  });

  it('ERR to GETTIME after a pause (the engine already waits for data) → BP_ERR_RMBT_SERVER', async () => {
    // A small server that serves the pre-test and ping and answers GETTIME with a late ERR.
    const ACCEPT = 'ACCEPT GETCHUNKS GETTIME PUT PUTNORESULT PING QUIT\n';
    const fake = await fakeServer((line, sock) => {
      const [cmd, a, b] = line.split(' ');
      if (cmd === 'GETCHUNKS') {
        for (let i = 1; i <= Number(a); i++) {
          // a new buffer per write: the socket may still hold the previous one
          const chunk = Buffer.alloc(Number(b ?? 4096));
          chunk[chunk.length - 1] = i === Number(a) ? 0xff : 0;
          sock.write(chunk);
        }
      } else if (cmd === 'OK') sock.write(`TIME 1000000\n${ACCEPT}`);
      else if (cmd === 'PING') sock.write('PONG\n');
      else if (cmd === 'GETTIME') setTimeout(() => sock.write(`ERR\n${ACCEPT}`), 300);
      else if (cmd === 'QUIT') sock.end('BYE\n');
    });
    try {
      const r = await measureRmbt(
        clientSettings({
          server: `127.0.0.1:${fake.port}`,
          key: 'k',
          transport: 'plain',
          threads: '1',
          io_timeout: '1',
        }),
        { engine, general: settings.general },
      );
      expect(r.error).toMatchObject({ code: 'BP_ERR_RMBT_SERVER' });
      expect(r.ping!.count).toBeGreaterThan(0);
    } finally {
      await fake.close();
    }
  });

  it('a malformed TIME reply → BP_ERR_PROTOCOL', async () => {
    const fake = await fakeServer((line, sock) => {
      if (line.startsWith('GETCHUNKS')) {
        const chunk = Buffer.alloc(4096);
        chunk[4095] = 0xff;
        sock.write(chunk);
      } else if (line === 'OK') sock.write('TIME soon\n');
    });
    try {
      const r = await measureRmbt(
        clientSettings({ server: `127.0.0.1:${fake.port}`, key: 'k', transport: 'plain', threads: '1' }),
        {
          engine,
          general: settings.general,
        },
      );
      expect(r.error!.code).toBe('BP_ERR_PROTOCOL');
      expect(r.error!.message).toContain('expected TIME');
    } finally {
      await fake.close();
    }
  });

  it('abort mid-download → status aborted, BP_ERR_ABORTED', async () => {
    const ctrl = new AbortController();
    const r = await measureRmbt(
      clientSettings({
        server: `127.0.0.1:${portFor(servers, 'http')}`,
        key,
        transport: 'http',
        duration: '5',
      }),
      {
        engine,
        general: settings.general,
        signal: ctrl.signal,
        onEvent: (e) => {
          if (e.type === 'phase' && e.phase === 'download') setTimeout(() => ctrl.abort(), 200);
        },
      },
    );
    expect(r.status).toBe('aborted');
    expect(r.error!.code).toBe('BP_ERR_ABORTED');
  });

  it('a closed port → BP_ERR_CONNECT', async () => {
    const probe = net.createServer();
    await new Promise<void>((res) => probe.listen(0, '127.0.0.1', res));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((res) => probe.close(() => res()));
    const r = await measureRmbt(clientSettings({ server: `127.0.0.1:${port}`, key, transport: 'plain' }), {
      engine,
      general: settings.general,
    });
    expect(r.error!.code).toBe('BP_ERR_CONNECT');
  });

  it('the server limits measuring connections: past max_connections a valid token gets ERR BUSY', async () => {
    const own = await startServers(engine, { max_connections: '2' });
    try {
      const port = own.servers.measurement.portOf('plain', false)!;
      const secret = own.servers.keys[0]!;
      const socks = [0, 1, 2].map(() => net.connect(port, '127.0.0.1'));
      const answers: string[] = [];
      for (const s of socks) {
        const ch = new Channel(s);
        expect(await ch.readLine(2000)).toBe('RMBTv1.3.5');
        await ch.readLine(2000);
        ch.writeLine(`TOKEN ${makeToken(secret)}`);
        answers.push(await ch.readLine(2000));
      }
      expect(answers).toEqual(['OK', 'OK', 'ERR BUSY all 2 measurement slots are taken']);
      expect(own.servers.measurement.activeConnections).toBe(2);
      expect(own.servers.measurement.stats.refused).toBe(1);
      for (const s of socks) s.destroy();
    } finally {
      await own.servers.close();
    }
  });

  it('connections that never present a token are closed after handshake_timeout and cannot lock out a real client', async () => {
    const own = await startServers(engine, { max_connections: '2', handshake_timeout: '1' });
    try {
      const port = own.servers.measurement.portOf('plain', false)!;
      const httpPort = own.servers.measurement.portOf('http', false)!;
      const secret = own.servers.keys[0]!;
      // Silent ones, a half HTTP request and garbage: more than max_connections, all still pending.
      const idle = [0, 1, 2, 3].map(() => net.connect(port, '127.0.0.1'));
      const half = net.connect(httpPort, '127.0.0.1');
      half.write('GET /rmbt HTTP/1.1\r\nHost: x\r\n');
      const junk = net.connect(port, '127.0.0.1');
      junk.write('\x00\x01garbage without a newline');
      const all = [...idle, half, junk];
      const closed = all.map((s) => new Promise<number>((res) => s.once('close', () => res(Date.now()))));
      for (const s of all) {
        s.on('error', () => {});
        s.resume(); // read what the server says, so its close is seen
      }
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      const r = await measureRmbt(
        clientSettings({ server: `127.0.0.1:${port}`, key: secret, transport: 'plain', threads: '2' }),
        {
          engine,
          general: own.settings.general,
        },
      );
      expect(r.status).toBe('ok');
      const at = await Promise.all(closed);
      expect(Math.max(...at) - t0).toBeLessThan(4000);
      expect(own.servers.measurement.stats.handshakeTimeouts).toBeGreaterThanOrEqual(all.length);
      expect(own.servers.measurement.pendingConnections).toBe(0);
    } finally {
      await own.servers.close();
    }
  });
});

describe('generated server state', () => {
  it('keeps the generated key and certificate in the data directory', async () => {
    const { servers, settings } = await startServers(ENGINES[0]!.make());
    await servers.close();
    expect(existsSync(join(settings.general.data_dir, 'rmbt-secret.key'))).toBe(true);
    expect(readFileSync(join(settings.general.data_dir, 'rmbt-server-cert.pem'), 'utf8')).toMatch(
      /BEGIN CERTIFICATE/,
    );
  });
});

describe('address family and source address', () => {
  // This machine's resolver has no IPv6 name for loopback, so the family is exercised with literals.
  it('IPv6 literal with ip_version 6 and an interface as source; mismatches are config errors', async () => {
    const engine = ENGINES[0]!.make();
    const { servers, settings } = await startServers(engine, { bind: '::1' });
    try {
      const port = servers.measurement.portOf('http', false)!;
      const key = servers.keys[0]!;
      const base = { server: `[::1]:${port}`, key, transport: 'http', threads: '1' };
      const v6 = await measureRmbt(clientSettings({ ...base, ip_version: '6', source_address: 'lo' }), {
        engine,
        general: settings.general,
      });
      expect(v6.error).toBeUndefined();
      expect(v6.server.host).toBe('::1');
      const v4 = await measureRmbt(clientSettings({ ...base, ip_version: '4' }), {
        engine,
        general: settings.general,
      });
      expect(v4.error!.code).toBe('BP_ERR_CONFIG');
      const badIf = await measureRmbt(clientSettings({ ...base, source_address: 'no-such-if0' }), {
        engine,
        general: settings.general,
      });
      expect(badIf.error!.code).toBe('BP_ERR_CONFIG');
      const v4only = await measureRmbt(
        clientSettings({ ...base, server: `127.0.0.1:${port}`, source_address: '127.0.0.1' }),
        {
          engine,
          general: settings.general,
        },
      );
      expect(v4only.error!.code).toBe('BP_ERR_CONNECT');
    } finally {
      await servers.close();
    }
  });
});

describe('TLS to an IP address', () => {
  it('a certificate is checked against the IP SANs: one for "localhost" only does not pass for 127.0.0.1', async () => {
    const dir = tempDir();
    const pems = await generate([{ name: 'commonName', value: 'localhost only' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }] }],
    });
    writeFileSync(join(dir, 'cert.pem'), pems.cert);
    writeFileSync(join(dir, 'key.pem'), pems.private);
    const engine = new JsEngine();
    const { servers, settings } = await startServers(engine, {
      cert: join(dir, 'cert.pem'),
      cert_key: join(dir, 'key.pem'),
    });
    try {
      const port = servers.measurement.portOf('http', true)!;
      const run = (host: string) =>
        measureRmbt(
          clientSettings({
            server: `${host}:${port}`,
            key: servers.keys[0]!,
            transport: 'https',
            measurement_tls_verify: 'true',
            tls_ca: join(dir, 'cert.pem'),
            threads: '1',
          }),
          { engine, general: settings.general },
        );
      const byIp = await run('127.0.0.1');
      expect(byIp.status).toBe('failed');
      expect(byIp.error!.code).toBe('BP_ERR_TLS');
      expect(byIp.error!.message).toMatch(/127\.0\.0\.1/);
      const byName = await run('localhost');
      expect(byName.status, JSON.stringify(byName.error)).toBe('ok');
    } finally {
      await servers.close();
    }
  });
});
