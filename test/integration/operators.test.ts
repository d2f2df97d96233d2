import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Settings } from '../../src/config/settings.js';
import type { Engine } from '../../src/engine/types.js';
import { createLogger } from '../../src/log.js';
import { timeZone } from '../../src/rmbt/control.js';
import { MAX_TEST_WAIT_S, type MeasureContext, measureRmbt } from '../../src/rmbt/measure.js';
import type { RunningRmbtServers } from '../../src/rmbt/serve.js';
import { type Generation, type OperatorOptions, startOperator } from '../helpers/operators.js';
import { clientSettings, ENGINES, startServers, tempDir } from '../helpers/rmbt.js';

/**
 * Our client against stand-ins of the real deployments' control servers (test/helpers/operators.ts),
 * each point of research/rmbt-deployments.md that decides acceptance or the data filed, on
 * both engines. The measurement server is ours on [::] (dual-stack), checking v2 tokens against the
 * connection's address as the Rust server does.
 */
describe.each(ENGINES)('real deployments, $name engine', ({ make }) => {
  let engine: Engine;
  let servers: RunningRmbtServers;
  let settings: Settings;
  let ports: OperatorOptions['ports'];

  beforeAll(async () => {
    engine = make();
    ({ servers, settings } = await startServers(engine, {
      bind: '::',
      control_port: '0',
      // GETTIME beyond this is answered ERR, as RUSTD does outside its limits (F17)
      max_duration: '2',
    }));
    const m = servers.measurement;
    ports = {
      upgrade: m.portOf('http', false)!,
      upgradeTls: m.portOf('http', true)!,
      serverFirst: m.portOf('plain', false)!,
      serverFirstTls: m.portOf('plain', true)!,
    };
  });
  afterAll(async () => {
    await servers.close();
  });

  const operator = (generation: Generation, over: Partial<OperatorOptions> = {}) =>
    startOperator({ generation, key: servers.keys[0]!, ports, pinnedUrls: true, ...over });

  const measure = (
    control_url: string,
    over: Record<string, string> = {},
    ctx: Partial<MeasureContext> = {},
    dataDir = tempDir(),
  ) =>
    measureRmbt(clientSettings({ control_url, accept_terms: 'true', ...over }), {
      engine,
      general: { ...settings.general, data_dir: dataDir },
      ...ctx,
    });

  describe('test_wait is honoured within bounds, and ends with the run', () => {
    it('test_wait 1 is waited for; the run is ok', async () => {
      const op = await operator('ctrl', { testWait: 1 });
      try {
        const t0 = Date.now();
        const r = await measure(op.url('127.0.0.1'));
        expect(r.status, JSON.stringify(r.error)).toBe('ok');
        expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
      } finally {
        await op.close();
      }
    });

    it(`test_wait 600 is capped at ${MAX_TEST_WAIT_S} s (said in the log) and an abort ends the wait at once`, async () => {
      const op = await operator('ctrl', { testWait: 600 });
      const lines: string[] = [];
      const log = createLogger(
        'info',
        new Writable({
          write(c, _e, cb) {
            lines.push(String(c));
            cb();
          },
        }),
      );
      try {
        const ctrl = new AbortController();
        const t0 = Date.now();
        setTimeout(() => ctrl.abort(), 800);
        const r = await measure(op.url('127.0.0.1'), {}, { signal: ctrl.signal, log });
        expect(Date.now() - t0).toBeLessThan(5000);
        expect(r.status).toBe('aborted');
        expect(r.error?.code).toBe('BP_ERR_ABORTED');
        expect(lines.join('')).toContain(`waiting ${MAX_TEST_WAIT_S} s at most`);
      } finally {
        await op.close();
      }
    });
  });

  describe('F1/F9: control calls share the measurement family, so a v2 token fits the connection', () => {
    it('control URL on ::1, ip_version 4: the IPv4-pinned control server hands out the token, the run is ok', async () => {
      const op = await operator('ctrl');
      try {
        const r = await measure(op.url('[::1]'), { ip_version: '4' });
        expect(r.error).toBeUndefined();
        expect(r.status).toBe('ok');
        // settings went where configured; testRequest and result over IPv4 to the pinned URL
        expect(op.settings.every((s) => s.ip === '::1')).toBe(true);
        expect(op.testRequests.map((t) => t.ip)).toEqual(['127.0.0.1']);
        expect(op.testRequests[0]!.body.protocol_version).toBe('ipv4');
        expect(r.rmbt!.client_ip).toBe('127.0.0.1');
        expect(r.rmbt!.control_url).toBe(`http://127.0.0.1:${op.port}/RMBTControlServer`);
        expect(op.results).toHaveLength(1);
        expect(op.results[0]!.ip).toBe('127.0.0.1');
        expect(op.results[0]!.body.test_ip_local).toBe('127.0.0.1');
      } finally {
        await op.close();
      }
    });

    it('without pinned URLs the control connection itself keeps to the family', async () => {
      const op = await operator('ctrl', { pinnedUrls: false });
      try {
        const r = await measure(op.url('[::1]'), { ip_version: '6' });
        expect(r.status).toBe('ok');
        expect(new Set(op.settings.concat(op.testRequests, op.results).map((x) => x.ip))).toEqual(
          new Set(['::1']),
        );
        expect(op.results).toHaveLength(1);
        expect(r.server.address).toBe('::1');
        // a name resolves in the family asked for (here localhost has IPv4 only)
        const r4 = await measure(op.url('localhost'), { ip_version: '4' });
        expect(r4.status).toBe('ok');
        expect(op.testRequests[1]!.ip).toBe('127.0.0.1');
        // an address of the other family cannot give a token for this one: said before any test
        const wrong = await measure(op.url('[::1]'), { ip_version: '4' });
        expect(wrong.error!.code).toBe('BP_ERR_CONFIG');
        expect(op.testRequests).toHaveLength(2);
      } finally {
        await op.close();
      }
    });

    it('the stand-in can fail: a token bound to ::1 used from 127.0.0.1 is refused (BP_ERR_RMBT_TOKEN)', async () => {
      // an operator whose measurement server is IPv4-only while its control server is reached over IPv6
      const op = await operator('ctrl', { serverAddress: '127.0.0.1' });
      try {
        const r = await measure(op.url('[::1]'));
        expect(r.status).toBe('failed');
        expect(r.error!.code).toBe('BP_ERR_RMBT_TOKEN');
        expect(r.rmbt!.submitted).toBe(false);
      } finally {
        await op.close();
      }
    });
  });

  describe('F3: the server type', () => {
    it('`RMBT` on an upgrade-only server (the Rust server): no greeting comes, the client upgrades', async () => {
      const op = await operator('ctrl', { rmbtRow: 'upgrade' });
      try {
        const r = await measure(op.url('127.0.0.1'), { transport: 'auto', threads: '2' });
        expect(r.error).toBeUndefined();
        expect(r.server.transport).toBe('https');
        expect(r.connections!.every((c) => c.upgrade_ms !== undefined)).toBe(true);
      } finally {
        await op.close();
      }
    });

    it('`RMBT` on a server-first server (RMBTD without -w): the greeting comes, no upgrade', async () => {
      const op = await operator('ctrl', { rmbtRow: 'server-first' });
      try {
        const r = await measure(op.url('127.0.0.1'), { transport: 'auto' });
        expect(r.status).toBe('ok');
        expect(r.server.transport).toBe('tls');
        expect(r.connections!.every((c) => c.upgrade_ms === undefined)).toBe(true);
      } finally {
        await op.close();
      }
    });

    it('the legacy server names no type: asking for ws speaks WebSocket to its RMBTws server', async () => {
      const op = await operator('legacy');
      try {
        const r = await measure(op.url('127.0.0.1'), { transport: 'ws' });
        expect(r.error).toBeUndefined();
        expect(r.server.transport).toBe('wss');
        expect(op.testRequests[0]!.body.client).toBe('RMBTws');
        expect(op.testRequests[0]!.body.capabilities).toBeUndefined();
        expect(op.results[0]!.body.client_name).toBe('RMBTws');
      } finally {
        await op.close();
      }
    });
  });

  it('F4/F7: the legacy server accepts version 0.3 and a client_version that is the server greeting', async () => {
    const op = await operator('legacy');
    try {
      const r = await measure(op.url('127.0.0.1'));
      expect(r.error).toBeUndefined();
      expect(op.testRequests[0]!.body.version).toBe('0.3');
      expect(r.rmbt!.submitted).toBe(true);
      const body = op.results[0]!.body;
      expect(body.client_version).toBe(r.server.version);
      expect(body.client_version).toBe('1.3.5');
      expect(body.client_software_version).toMatch(/^\d+\.\d+\.\d+/);
      expect(body.plattform).toBe(body.platform);
    } finally {
      await op.close();
    }
  });

  it('F5: a self-signed measurement server is used without tls_ca (the token authenticates the test)', async () => {
    const op = await operator('ctu', { encryption: true });
    try {
      const r = await measure(op.url('127.0.0.1'), { tls_insecure: 'false' });
      expect(r.status).toBe('ok');
      expect(r.server.encryption).toBe(true);
      // CTU: no v2 part
      expect(String(op.results[0]!.body.test_token)).not.toContain('#v2#');
      const strict = await measure(op.url('127.0.0.1'), { measurement_tls_verify: 'true' });
      expect(strict.error!.code).toBe('BP_ERR_TLS');
    } finally {
      await op.close();
    }
  });

  it('F6: speed_detail is thinned to 40 ms per thread while our result keeps the full series', async () => {
    const op = await operator('ctrl', { duration: 2 });
    try {
      const r = await measure(op.url('127.0.0.1'), { threads: '3' });
      expect(r.status).toBe('ok');
      const body = op.results[0]!.body;
      const detail = body.speed_detail as { direction: string; thread: number; time: number }[];
      for (const dir of ['download', 'upload'] as const) {
        for (let t = 0; t < 3; t++) {
          // (without the (0, 0) anchor)
          const times = detail
            .filter((d) => d.direction === dir && d.thread === t)
            .map((d) => d.time)
            .slice(1);
          const tStar = (dir === 'download' ? r.download! : r.upload!).duration_ms * 1e6;
          const close = times.slice(1).filter((x, i) => x - times[i]! < 40e6);
          // only the points kept for t* (last before, first after) and the final point may be closer
          expect(close.length).toBeLessThanOrEqual(3);
          // duration_ms is rounded to µs: allow that much
          expect(times.some((x) => x >= tStar - 1e3)).toBe(true);
        }
      }
      // our server reports PUT progress every 1 ms like RMBTD: far more points than were sent
      expect(r.upload!.series.length).toBeGreaterThan(0);
      expect(JSON.stringify(body).length).toBeLessThan(200_000);
      expect(op.tooLarge).toHaveLength(0);
    } finally {
      await op.close();
    }
  });

  it('F6: a body past the front proxy limit (nginx answers 413 in HTML) is a coded submit error; the run stays ok', async () => {
    const op = await operator('ctrl', { bodyLimit: 4096 });
    try {
      const r = await measure(op.url('127.0.0.1'));
      expect(r.status).toBe('ok');
      expect(r.rmbt!.submitted).toBe(false);
      expect(r.rmbt!.submit_error).toMatch(/HTTP 413 .* is not JSON/);
      expect(op.tooLarge).toHaveLength(1);
    } finally {
      await op.close();
    }
  });

  it('F2: Specure (Nettfart) — /mobile paths and the tenant header; without it the coded control error', async () => {
    const op = await operator('specure', { tenant: 'nt' });
    try {
      const r = await measure(op.url('127.0.0.1'), {
        control_api: 'specure',
        control_headers: 'X-Nettest-Client: nt',
      });
      expect(r.error).toBeUndefined();
      expect(r.rmbt!.submitted).toBe(true);
      expect(r.rmbt!.result_url).toMatch(/\/mobile\/result$/);
      const bad = await measure(op.url('127.0.0.1'), { control_api: 'specure' });
      expect(bad.error!.code).toBe('BP_ERR_RMBT_CONTROL');
      expect(bad.error!.message).toContain('X-Nettest-Client');
      const paths = await measure(op.url('127.0.0.1'), { control_headers: 'X-Nettest-Client: nt' });
      expect(paths.error!.code).toBe('BP_ERR_RMBT_CONTROL');
    } finally {
      await op.close();
    }
  });

  it('F8: automated runs are loop-mode tests with the loop_uuid the server minted and a counter; manual runs are not', async () => {
    const op = await operator('ctrl');
    const dir = tempDir();
    try {
      const url = op.url('127.0.0.1');
      const auto = { automated: { everyMin: 60 }, targetId: 'isp' };
      const a = await measure(url, {}, auto, dir);
      const b = await measure(url, {}, auto, dir);
      const m = await measure(url, {}, { targetId: 'isp' }, dir);
      expect([a.status, b.status, m.status]).toEqual(['ok', 'ok', 'ok']);
      const [ra, rb, rm] = op.testRequests.map((t) => t.body);
      expect(ra!.user_loop_mode).toBe(true);
      expect(ra!.loopmode_info).toMatchObject({ test_counter: 1, loop_uuid: null, max_delay: 60 });
      expect(rb!.loopmode_info).toMatchObject({ test_counter: 2, loop_uuid: a.rmbt!.loop_uuid });
      expect(a.rmbt!.loop_uuid).toMatch(/^[0-9a-f-]{36}$/);
      expect(b.rmbt!.loop_uuid).toBe(a.rmbt!.loop_uuid);
      expect(rm!.loopmode_info).toBeUndefined();
      expect(rm!.user_loop_mode).toBeUndefined();
      const off = await measure(url, { loop_mode: 'false' }, auto, dir);
      expect(off.status).toBe('ok');
      expect(op.testRequests[3]!.body.loopmode_info).toBeUndefined();
    } finally {
      await op.close();
    }
  });

  it('F10–F13: network type, granted threads, time zone, ping offsets from the test start, optional fields', async () => {
    const op = await operator('ctrl', { threads: 2 });
    try {
      const r = await measure(op.url('127.0.0.1'), { threads: '5', pretest_duration: '0.3' });
      expect(r.status).toBe('ok');
      expect(op.testRequests[0]!.body.num_threads).toBe(5);
      // F11: forced 5, granted 2 → 2 used
      expect(r.download!.streams).toBe(2);
      expect(r.upload!.streams).toBe(2);
      const body = op.results[0]!.body;
      expect(body.test_num_threads).toBe(2);
      // F10: loopback is no Ethernet or WLAN port: LAN
      expect(body.network_type).toBe(98);
      expect(r.rmbt!.network_type).toBe(98);
      expect(body.timezone).toBe(timeZone());
      expect(op.testRequests[0]!.body.timezone).toBe(timeZone());
      const pings = body.pings as { time_ns: number }[];
      // the ping phase follows the 0.3 s download pre-test: offsets count from the test start
      expect(pings[0]!.time_ns).toBeGreaterThan(0.3e9);
      expect(body.test_ip_local).toBe('127.0.0.1');
      expect(body.test_ip_server).toBe('127.0.0.1');
      expect(body.time_dl_ns as number).toBeGreaterThan(pings[0]!.time_ns);
      expect(body.time_ul_ns as number).toBeGreaterThan(body.time_dl_ns as number);
      expect(body.test_total_bytes_download as number).toBeGreaterThan(body.test_bytes_download as number);
      expect(body.test_total_bytes_upload as number).toBeGreaterThan(body.test_bytes_upload as number);
      // F15: upload chunks at most 512 KiB even on a fast path
      expect(r.upload!.chunk_size).toBeLessThanOrEqual(512 * 1024);
      const ethernet = await measure(op.url('127.0.0.1'), { network_type: 'ethernet', threads: '1' });
      expect(op.results[1]!.body.network_type).toBe(106);
      expect(ethernet.status).toBe('ok');
    } finally {
      await op.close();
    }
  });

  it('F12: without accepted terms → BP_ERR_RMBT_TERMS with the terms URL; accepting sends the advertised version', async () => {
    const op = await operator('ctrl');
    try {
      const no = await measure(op.url('127.0.0.1'), { accept_terms: 'false' });
      expect(no.error!.code).toBe('BP_ERR_RMBT_TERMS');
      expect(no.error!.message).toContain(op.termsUrl);
      const yes = await measure(op.url('127.0.0.1'));
      expect(yes.status).toBe('ok');
      expect(op.acceptedTermsOf(yes.rmbt!.client_uuid!)).toBe(op.termsVersion);
    } finally {
      await op.close();
    }
  });

  it('F14: a failed run is not filed as submitted (CTRL would drop it silently)', async () => {
    // a measurement server port where nothing listens
    const op = await operator('ctrl', {
      ports: { upgrade: 1, upgradeTls: 1, serverFirst: 1, serverFirstTls: 1 },
    });
    try {
      const r = await measure(op.url('127.0.0.1'));
      expect(r.status).toBe('failed');
      expect(r.rmbt!.submitted).toBe(false);
      expect(r.rmbt!.submit_skipped).toContain('failed');
      expect(op.results.length + op.dropped.length).toBe(0);
    } finally {
      await op.close();
    }
  });

  describe('F17: robustness edges', () => {
    it('a result_url on another host (CTRL default: a loopback URL) is not followed; empty optional fields are absent', async () => {
      const op = await operator('ctrl', { resultUrl: 'http://127.0.0.2:8080/RMBTControlServer/result' });
      const empty = await operator('ctrl', { emptyOptionals: true });
      try {
        const r = await measure(op.url('127.0.0.1'));
        expect(r.rmbt!.submitted).toBe(true);
        expect(r.rmbt!.result_url).toBe(`${op.url('127.0.0.1')}/result`);
        expect(op.results).toHaveLength(1);
        const e = await measure(empty.url('127.0.0.1'));
        expect(e.error).toBeUndefined();
        expect(e.server.name).toBeUndefined();
        expect(e.rmbt!.submitted).toBe(true);
      } finally {
        await op.close();
        await empty.close();
      }
    });

    // Plain transports, so the native engine takes the sockets (WebSocket: its outcome is classified).
    for (const transport of ['http', 'ws'] as const) {
      it(`ERR to a GETTIME outside the server's limits is a coded failure, not chunk data (${transport})`, async () => {
        const op = await operator('ctrl', { duration: 3, encryption: false });
        try {
          const r = await measure(op.url('127.0.0.1'), { transport, threads: '1', io_timeout: '2' });
          expect(r.server.transport).toBe(transport);
          expect(r.status).toBe('failed');
          expect(r.error!.code).toBe('BP_ERR_RMBT_SERVER');
          expect(r.ping!.count).toBeGreaterThan(0);
        } finally {
          await op.close();
        }
      });
    }
  });

  it('F16: connections the download does not use are closed and replaced for the upload', async () => {
    // 9 granted; the pre-test picks 5 for a fast download, so 4 would idle through ping and download
    const op = await operator('ctrl', { threads: 9 });
    try {
      const r = await measure(op.url('127.0.0.1'));
      expect(r.status).toBe('ok');
      expect(r.download!.streams).toBe(5);
      expect(r.connections!.length).toBe(9 + 4);
    } finally {
      await op.close();
    }
  });
});
