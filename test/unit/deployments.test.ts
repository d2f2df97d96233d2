import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/load.js';
import { startResult } from '../../src/measure/result.js';
import { newRaw } from '../../src/rmbt/client.js';
import { pinnedBase, resultTarget } from '../../src/rmbt/control.js';
import { parseHeaders } from '../../src/rmbt/measure.js';
import { DETAIL_GAP_NS, resultBody, rmbtFigures, thinPoints } from '../../src/rmbt/report.js';
import { accessNetwork } from '../../src/util/netif.js';

describe('speed_detail thinning (research F6)', () => {
  const series = (n: number, stepNs: number, rate: number) =>
    Array.from({ length: n }, (_, i) => ({ t: (i + 1) * stepNs, b: (i + 1) * stepNs * rate }));

  it('keeps points ≥ 40 ms apart, the two around t* and the last', () => {
    const pts = series(1000, 1e6, 1); // 1 ms feedback for 1 s
    const tStar = 500.5e6;
    const thin = thinPoints(pts, tStar);
    expect(thin.length).toBeLessThan(40);
    const gaps = thin.slice(1).map((p, i) => p.t - thin[i]!.t);
    expect(gaps.filter((g) => g < DETAIL_GAP_NS).length).toBeLessThanOrEqual(3);
    expect(thin.some((p) => p.t === 500e6)).toBe(true);
    expect(thin.some((p) => p.t === 501e6)).toBe(true);
    expect(thin.at(-1)).toEqual(pts.at(-1));
  });

  it('a 3-thread 30 s result with 1 ms feedback stays far below nginx 1 MB body limit', () => {
    const raw = newRaw();
    const dir = () => ({
      threads: [0, 1, 2].map(() => series(30_000, 1e6, 100)),
      totals: [3e9, 3e9, 3e9],
      chunkSize: 65536,
      serverNs: [30e9, 30e9, 30e9],
      startNs: 1e9,
    });
    raw.download = dir();
    raw.upload = dir();
    raw.version = '1.6.0';
    const result = startResult({ id: 'x', kind: 'rmbt' }, { host: 'h', port: 1 }, 'native', new Date());
    Object.assign(result, rmbtFigures(raw));
    const body = resultBody(raw, result, {
      token: 't',
      clientUuid: 'c',
      port: 443,
      encryption: true,
      networkType: 98,
    });
    const size = JSON.stringify(body).length;
    const unthinned = 6 * 30_000 * 60;
    expect(size).toBeLessThan(400_000);
    expect(size).toBeLessThan(unthinned / 10);
    expect(body.client_version).toBe('1.6.0');
  });
});

describe('control URLs (F1, F17) and headers (F2)', () => {
  it('a pinned host keeps our scheme, port and path; a full URL is taken as it is', () => {
    const base = 'https://c01.netztest.at/RMBTControlServer';
    expect(pinnedBase(base, 'c01v4.netztest.at')).toBe('https://c01v4.netztest.at/RMBTControlServer');
    expect(pinnedBase('http://[::1]:8080/RMBTControlServer', '127.0.0.1:9/X')).toBe('http://127.0.0.1:9/X');
    expect(pinnedBase(base, 'https://v6.example/Ctl/')).toBe('https://v6.example/Ctl');
    expect(pinnedBase(base, undefined)).toBeUndefined();
  });

  it('result_url is followed only on the control server’s own origin unless trusted', () => {
    const o = {
      baseUrl: 'https://c01v4.example/RMBTControlServer',
      api: 'open-rmbt' as const,
      tls: { insecure: false },
      timeoutMs: 1,
    };
    const cfg = 'https://c01.example/RMBTControlServer';
    expect(resultTarget(o, cfg, 'https://c01.example/RMBTControlServer/result', false)).toBe(
      'https://c01.example/RMBTControlServer/result',
    );
    expect(resultTarget(o, cfg, 'http://127.0.0.1:8080/RMBTControlServer/result', false)).toBe(
      'https://c01v4.example/RMBTControlServer/result',
    );
    expect(resultTarget(o, cfg, 'http://127.0.0.1:8080/r', true)).toBe('http://127.0.0.1:8080/r');
    expect(resultTarget(o, cfg, 'file:///etc/passwd', true)).toBe(
      'https://c01v4.example/RMBTControlServer/result',
    );
    expect(resultTarget({ ...o, api: 'specure' }, cfg, undefined, false)).toBe(
      'https://c01v4.example/RMBTControlServer/mobile/result',
    );
  });

  it('control_headers parse and are validated at the edge', () => {
    expect(parseHeaders('X-Nettest-Client: nt; X-Other:  a b ')).toEqual({
      'X-Nettest-Client': 'nt',
      'X-Other': 'a b',
    });
    expect(() => loadSettings({ flags: { rmbt: { control_headers: 'no colon here' } } })).toThrow(
      /control_headers/,
    );
    expect(() => loadSettings({ flags: { rmbt: { control_headers: 'X: a\r\nInjected: b' } } })).toThrow(
      /control_headers/,
    );
  });
});

describe('network_type from the interface (F10)', () => {
  it('reads wlan, ethernet and anything else as lan from sysfs', () => {
    const sys = mkdtempSync(join(tmpdir(), 'bp-sysfs-'));
    const dev = (name: string, files: Record<string, string>, dirs: string[] = []) => {
      mkdirSync(join(sys, name));
      for (const [f, v] of Object.entries(files)) writeFileSync(join(sys, name, f), v);
      for (const d of dirs) mkdirSync(join(sys, name, d));
    };
    dev('wlan0', { type: '1\n' }, ['wireless', 'device']);
    dev('eth0', { type: '1\n' }, ['device']);
    dev('br0', { type: '1\n' });
    dev('lo', { type: '772\n' });
    expect(accessNetwork('wlan0', sys)).toBe('wlan');
    expect(accessNetwork('eth0', sys)).toBe('ethernet');
    expect(accessNetwork('br0', sys)).toBe('lan');
    expect(accessNetwork('lo', sys)).toBe('lan');
    expect(accessNetwork('missing', sys)).toBe('lan');
    expect(accessNetwork(undefined, sys)).toBe('lan');
    expect(accessNetwork('../etc', sys)).toBe('lan');
  });
});
