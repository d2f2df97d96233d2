import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/load.js';
import type { Engine } from '../../src/engine/types.js';
import type { InboundReport } from '../../src/measure/inbound.js';
import { measureNdt7 } from '../../src/ndt7/measure.js';
import { Ndt7Server } from '../../src/ndt7/server.js';
import { Quota } from '../../src/net/quota.js';
import { ENGINES } from '../helpers/rmbt.js';

/** Our ndt7 client against our ndt7 server on loopback, both engines; 2 s tests instead of 10. */
const TEST_MS = 2000;

const settings = (over: Record<string, string>) =>
  loadSettings({ flags: { ndt7: { io_timeout: '5', ...over } } });

describe.each(ENGINES)('ndt7, $name engine', ({ make }) => {
  let engine: Engine;
  let server: Ndt7Server;
  const tests: InboundReport[] = [];
  beforeAll(async () => {
    engine = make();
    server = new Ndt7Server({
      host: '127.0.0.1',
      port: 0,
      maxSessions: 4,
      engine,
      quota: new Quota({ dailyBytesPerAddress: 0, dailySessionsPerAddress: 0, dailyBytes: 0 }),
      onTest: (r) => tests.push(r),
      testMs: TEST_MS,
    });
    await server.start();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('download and upload over ws: figures from our count and the server TCPInfo, ping from MinRTT', async () => {
    const s = settings({ server: `127.0.0.1:${server.port}`, scheme: 'ws' });
    const r = await measureNdt7(s.ndt7, { engine, general: s.general, testMs: TEST_MS });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe('ok');
    console.log(
      JSON.stringify({
        dl: r.download?.mbps,
        ul: r.upload?.mbps,
        ndt7: r.ndt7,
        ping: r.ping?.median_ms,
        lat: r.latency?.grade,
      }),
    );
    expect(r.download!.mbps).toBeGreaterThan(10);
    expect(r.upload!.mbps).toBeGreaterThan(10);
    expect(r.ndt7!.upload_source).toBe('server');
    await expect.poll(() => tests.length, { timeout: 3000 }).toBe(2);
  });
});
