import { mkdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureBtest } from '../../src/btest/measure.js';
import { BtestServer } from '../../src/btest/server.js';
import { loadSettings } from '../../src/config/load.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { createLogger } from '../../src/log.js';
import { type Service, startService } from '../../src/main.js';
import { latencyResult, latencySet } from '../../src/measure/latency.js';
import { tempDir } from '../helpers/rmbt.js';

/**
 * The page in Debian's Chromium (playwright-core), under an ingress-like prefix through a small reverse
 * proxy that adds X-Ingress-Path as the Supervisor does: click "Run now", watch the live progress, see
 * the run in the history. Screenshots (light, dark, narrow) go to test-artifacts/screens/.
 */
const SCREENS = join(import.meta.dirname, '../../test-artifacts/screens');
const PREFIX = '/api/hassio_ingress/Zm9vYmFy';
let btest: BtestServer;
let svc: Service;
let proxy: http.Server;
let browser: Browser;
let base: string;

/** The service as the page tests run it: js engine, no busy check, no MQTT, a free loopback port. */
function pageSettings(env: Record<string, string>) {
  return loadSettings({
    flags: {
      general: { data_dir: tempDir(), log_level: 'silent', engine: 'js' },
      service: { busy_check: 'off' },
      web: { bind: '127.0.0.1', port: '0' },
      mqtt: { enabled: 'off' },
    },
    env,
  });
}

/** Supervisor-like ingress proxy: strips the prefix, adds X-Ingress-Path, streams responses as they come. */
function ingressProxy(targetPort: number): http.Server {
  return http.createServer((req, res) => {
    if (!req.url?.startsWith(`${PREFIX}/`)) {
      res.writeHead(404).end();
      return;
    }
    const up = http.request(
      {
        host: '127.0.0.1',
        port: targetPort,
        method: req.method,
        path: req.url.slice(PREFIX.length),
        headers: { ...req.headers, 'x-ingress-path': PREFIX },
      },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
}

beforeAll(async () => {
  btest = new BtestServer({
    host: '127.0.0.1',
    port: 0,
    udpPortStart: 39000,
    auth: 'none',
    user: 'x',
    maxSessions: 4,
    maxDurationS: 60,
    maxBytes: 0,
    handshakeTimeoutMs: 2000,
    engine: new JsEngine(),
  });
  await btest.start();
  const s = pageSettings({
    BANDWIDTH_PROBE_TARGETS: JSON.stringify([
      {
        id: 'router',
        name: 'Router',
        type: 'btest',
        host: `127.0.0.1:${btest.port}`,
        direction: 'both',
        duration: 3,
        threshold_download: 100,
      },
      {
        id: 'lab',
        name: 'Lab 25G',
        type: 'btest',
        host: `127.0.0.1:${btest.port}`,
        direction: 'receive',
        duration: 1,
        schedule: '0 3 * * *',
      },
      {
        id: 'router_udp',
        name: 'Router UDP',
        type: 'btest',
        host: `127.0.0.1:${btest.port}`,
        protocol: 'udp',
        duration: 1,
        remote_tx_speed: 50_000_000,
        schedule: '*/30 * * * *',
      },
    ]),
  });
  svc = await startService(s, createLogger('silent'), { version: 'e2e' });
  // A day of history for the charts: one real run, repeated at earlier times with varied figures.
  const rtts = (mid: number, spread: number) =>
    Array.from({ length: 20 }, (_, i) => ({ t_ms: i * 200, ms: mid + spread * Math.sin(i) }));
  const done = new Promise<void>((r) => {
    const off = svc.runner.on((e) => {
      if (e.type === 'finished') {
        off();
        r();
      }
    });
  });
  svc.runner.enqueue('router_udp', 'manual');
  await done;
  const seed = svc.store.list({ target: 'router_udp', limit: 1 })[0]!.result;
  for (let h = 23; h >= 1; h--) {
    const at = new Date(Date.now() - h * 3600_000).toISOString();
    const f = 0.8 + 0.2 * Math.sin(h);
    svc.store.insert({
      ...seed,
      target: { id: 'router', kind: 'btest' },
      started_at: at,
      finished_at: at,
      download: seed.download && { ...seed.download, mbps: Math.round(940 * f) },
      upload: { ...(seed.upload ?? seed.download!), mbps: Math.round(420 * f) },
      ping: { ...(seed.ping as NonNullable<typeof seed.ping>), median_ms: 8 + 4 * f, jitter_ms: 1 + f },
      // latency under load: an idle 10 ms line whose queue adds 40–60 ms downloading
      latency: latencyResult({
        idle: latencySet('tcp_connect', rtts(10, 1))!,
        download: latencySet('tcp_connect', rtts(20 + 40 * f, 5))!,
        upload: latencySet('tcp_connect', rtts(15 + 10 * f, 2))!,
      }),
      flags: h % 7 === 0 ? ['link_busy'] : [],
      ...(h === 5
        ? { status: 'failed', error: { code: 'BP_ERR_CONNECT', message: 'connection refused' } }
        : {}),
    });
  }
  // A fast LAN target: figures in Gbit/s, five digits in Mbit/s (they used to overflow the card).
  for (let h = 20; h >= 0; h -= 4) {
    const at = new Date(Date.now() - h * 3600_000 - 60_000).toISOString();
    svc.store.insert({
      ...seed,
      target: { id: 'lab', kind: 'btest' },
      started_at: at,
      finished_at: at,
      download: seed.download && { ...seed.download, mbps: 21_800 + h * 10 },
      upload: { ...(seed.upload ?? seed.download!), mbps: 13_000 },
      flags: h === 8 ? ['cpu_limited'] : [],
    });
  }
  proxy = ingressProxy(svc.webPort!);
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}${PREFIX}/`;
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  mkdirSync(SCREENS, { recursive: true });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  proxy?.close();
  await svc?.close();
  await btest?.close();
});

/**
 * WCAG contrast of every element matching `sel` against the first opaque background behind it, from
 * computed colours (runs in the page). Returns the lowest ratios with what they belong to.
 */
function contrastReport(sel: string): { what: string; ratio: number }[] {
  const parse = (c: string) => {
    const m = /rgba?\(([^)]+)\)/.exec(c);
    if (!m) return null;
    const [r, g, b, a = 1] = m[1]!
      .split(/[ ,/]+/)
      .filter(Boolean)
      .map(Number);
    return { r: r!, g: g!, b: b!, a };
  };
  const lum = (c: { r: number; g: number; b: number }) => {
    const f = (v: number) => {
      const x = v / 255;
      return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const bgOf = (el: Element | null): { r: number; g: number; b: number } => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return { r: 255, g: 255, b: 255 };
  };
  const out: { what: string; ratio: number }[] = [];
  for (const el of document.querySelectorAll(sel)) {
    const st = getComputedStyle(el);
    if (st.display === 'none' || st.visibility === 'hidden' || (el as HTMLButtonElement).disabled) continue;
    if (!el.textContent?.trim()) continue;
    const fg = parse(st.color)!;
    const bg = bgOf(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a) as [number, number];
    out.push({
      what: `${el.tagName.toLowerCase()}.${(el as HTMLElement).className} "${el.textContent.trim().slice(0, 20)}"`,
      ratio: Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100,
    });
  }
  return out.sort((a, b) => a.ratio - b.ratio);
}

const READ_TEXT =
  '.pill, button, .fig b, .fig span, .meta span, td, th, h1, h2, .status-ok, .status-failed, a, footer, .err';

describe('status page in Chromium behind an ingress-like prefix', () => {
  it('shows the targets, runs one on "Run now" with live progress, and lists it in the history', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 }, colorScheme: 'light' });
    const page = await ctx.newPage();
    const outside: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(base)) outside.push(r.url());
    });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(base);
    await page.locator('article[data-target="router"] h2', { hasText: 'Router' }).waitFor();
    await page.locator('#runs tbody tr[data-run]').first().waitFor();
    const before = await page.locator('#runs tbody tr[data-run]').count();
    expect(before).toBeGreaterThan(10);

    await page.locator('article[data-target="router"] button.run-now').click();
    await page.locator('#live').waitFor({ state: 'visible', timeout: 10_000 });
    await page.waitForFunction(
      () => Number.parseFloat(document.querySelector('#live-mbps')?.textContent ?? '') > 0,
      null,
      {
        timeout: 10_000,
      },
    );
    expect(await page.locator('#live-target').textContent()).toBe('Router');
    await page.screenshot({ path: join(SCREENS, 'live-light.png'), fullPage: true });

    // the run ends: the live panel goes, the card and the table show it
    await page.locator('#live').waitFor({ state: 'hidden', timeout: 20_000 });
    await page.waitForFunction(
      (n) => document.querySelectorAll('#runs tbody tr[data-run]').length > n,
      before,
      {
        timeout: 10_000,
      },
    );
    const card = page.locator('article[data-target="router"]');
    await expect.poll(async () => card.locator('.pill.ok').count()).toBeGreaterThan(0);
    expect(await card.locator('.fig.down b').textContent()).toMatch(/^\d+(\.\d{1,2})?$/);
    expect(await card.locator('.fig.down span').textContent()).toMatch(/^[MG]bit\/s down$/);
    // latency under load on the card: btest both ways has a grade and a responsiveness
    expect(await card.locator('.meta.loaded').textContent()).toMatch(/grade (A\+|[A-F]).*\d+ RPM/);
    await page.screenshot({ path: join(SCREENS, 'page-light.png'), fullPage: true });

    // one run's detail, opened from the keyboard: rows are focusable and Enter opens them
    const row = page.locator('#runs tbody tr[data-run]').first();
    expect(await row.getAttribute('tabindex')).toBe('0');
    await row.focus();
    await page.keyboard.press('Enter');
    await page.locator('#detail[open]').waitFor();
    const detail = await page.locator('#detail-body').textContent();
    expect(detail).toMatch(/Engine/);
    // the title names the target, streams are counted in words, the trigger is said
    expect(await page.locator('#detail-body h2').textContent()).toMatch(/^Router · /);
    expect(detail).toMatch(/Started byhand/);
    expect(detail).not.toMatch(/\b1 streams\b/);
    // latency idle and under load side by side, with the grade and how it was measured
    expect(detail).toMatch(/LatencymsIdleBoth ways\s*median/);
    expect(detail).toMatch(/TCP connect round trips/);
    expect(detail).toMatch(/Bufferbloatgrade (A\+|[A-F]) \(\+[\d.]+ ms both ways\), responsiveness \d+ RPM/);
    expect(await page.locator('#detail-body table.latency tbody tr').count()).toBeGreaterThanOrEqual(5);
    // download and upload each against their own times: the x values are seconds into the direction
    await page.locator('#detail-chart .u-legend').waitFor();
    await page.screenshot({ path: join(SCREENS, 'detail-light.png') });
    await page.keyboard.press('Escape');
    await page.locator('#detail[open]').waitFor({ state: 'detached' });

    // units: five-digit Mbit/s figures read as Gbit/s and fit their card
    const lab = page.locator('article[data-target="lab"]');
    expect(await lab.locator('.fig.down b').textContent()).toBe('21.8');
    expect(await lab.locator('.fig.down span').textContent()).toBe('Gbit/s down');
    const fits = await lab.evaluate((card) =>
      [...card.querySelectorAll('.fig b')].every((b) => b.scrollWidth <= (b as HTMLElement).offsetWidth + 1),
    );
    expect(fits).toBe(true);
    // btest has no ping: no ping figure on its cards
    expect(await lab.locator('.fig.ping').count()).toBe(0);
    expect(await page.locator('#runs tbody').textContent()).toMatch(/21\.8 Gbit\/s/);

    // History, all targets: one download and one upload series per target with runs, never one line
    // across targets; the 24 h axis shows times of day, not years
    await page.locator('#h-target').selectOption('');
    const legend = await page.locator('#chart-speed .u-legend .u-series').allTextContents();
    for (const name of ['Router download', 'Router upload', 'Lab 25G download', 'Router UDP download'])
      expect(
        legend.some((l) => l.includes(name)),
        `${name} in ${legend.join(' | ')}`,
      ).toBe(true);
    expect(legend.some((l) => /Gbit\/s/.test(l))).toBe(true);
    // loaded latency beside ping in the latency chart, one series per target and direction
    const pingLegend = await page.locator('#chart-ping .u-legend .u-series').allTextContents();
    for (const name of ['Router download latency ms', 'Router upload latency ms'])
      expect(
        pingLegend.some((l) => l.includes(name)),
        `${name} in ${pingLegend.join(' | ')}`,
      ).toBe(true);
    // (the axes are drawn on a canvas: read what uPlot computed through the page's chart handle)
    type Axis = { labels: string[]; min: number; max: number; yMin: number };
    const xAxis = () =>
      page.evaluate((): Axis => {
        const u = (
          window as unknown as {
            bandwidthProbe: {
              charts: Map<
                string,
                { axes: { _values?: unknown[] }[]; scales: Record<'x' | 'y', { min: number; max: number }> }
              >;
            };
          }
        ).bandwidthProbe.charts.get('chart-speed')!;
        return {
          labels: (u.axes[0]?._values ?? []).map(String),
          min: u.scales.x.min,
          max: u.scales.x.max,
          yMin: u.scales.y.min,
        };
      });
    const day = await xAxis();
    expect(day.max - day.min).toBeCloseTo(86_400, -2);
    expect(day.yMin).toBe(0);
    expect(day.labels.length).toBeGreaterThan(2);
    for (const l of day.labels) expect(l, day.labels.join(' | ')).toMatch(/^\d{1,2}[:.]\d{2}/);
    expect(day.labels.join(' ')).not.toMatch(/20\d\d/);
    // 7 d: the axis spans the week, though all runs are from the last day
    await page.locator('.seg button[data-days="7"]').click();
    await expect.poll(async () => (await xAxis()).max - (await xAxis()).min).toBeGreaterThan(6.9 * 86_400);
    expect((await xAxis()).labels.join(' ')).not.toMatch(/20\d\d/);
    await page.screenshot({ path: join(SCREENS, 'history-7d-light.png'), fullPage: true });
    await page.locator('.seg button[data-days="1"]').click();

    // contrast: every text a person reads, ≥ 4.5:1 from computed colours
    const low = (await page.evaluate(contrastReport, READ_TEXT)).filter((x) => x.ratio < 4.5);
    expect(low).toEqual([]);

    expect(errors).toEqual([]);
    expect(outside).toEqual([]); // no CDN, no fonts: everything came through the prefix
    await ctx.close();
  }, 60_000);

  it('dark theme and a phone-sized screen', async () => {
    const dark = await browser.newContext({ viewport: { width: 1200, height: 900 }, colorScheme: 'dark' });
    const p1 = await dark.newPage();
    await p1.goto(base);
    await p1.locator('#runs tbody tr[data-run]').first().waitFor();
    const bg = await p1.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(bg).toBe('rgb(17, 20, 24)');
    await p1.locator('article[data-target="router"] .pill').first().waitFor();
    const lowDark = (await p1.evaluate(contrastReport, READ_TEXT)).filter((x) => x.ratio < 4.5);
    expect(lowDark).toEqual([]);
    await p1.screenshot({ path: join(SCREENS, 'page-dark.png'), fullPage: true });
    await dark.close();

    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      colorScheme: 'light',
    });
    const p2 = await phone.newPage();
    await p2.goto(base);
    await p2.locator('#runs tbody tr[data-run]').first().waitFor();
    // nothing wider than the screen except the scrollable table
    await p2.screenshot({ path: join(SCREENS, 'page-narrow.png'), fullPage: true });
    const wide = await p2.evaluate(() =>
      [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.table-wrap'))
        .map((e) => `${e.tagName}.${e.className}#${e.id}`)
        .slice(0, 5),
    );
    expect(wide).toEqual([]);
    const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    // the phone header stays a header (not half the screen) and its button stays on screen
    const head = await p2.locator('header').boundingBox();
    expect(head!.height).toBeLessThan(110);
    const btn = await p2.locator('#run-all').boundingBox();
    expect(btn!.x + btn!.width).toBeLessThanOrEqual(390);
    // the runs table scrolls inside its own box and its rows open by tap
    await p2.locator('#runs tbody tr[data-run]').first().click();
    await p2.locator('#detail[open]').waitFor();
    await p2.screenshot({ path: join(SCREENS, 'detail-narrow.png') });
    await phone.close();
  }, 60_000);

  it('first run without targets: a labelled loopback self-test with the next steps', async () => {
    const s = pageSettings({});
    const first = await startService(s, createLogger('silent'), { version: 'e2e' });
    try {
      const done = new Promise<void>((r) => {
        const off = first.runner.on((e) => {
          if (e.type === 'finished') {
            off();
            r();
          }
        });
      });
      const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 }, colorScheme: 'light' });
      const page = await ctx.newPage();
      await page.goto(`http://127.0.0.1:${first.webPort}/`);
      const box = page.locator('#selftest');
      await box.waitFor({ state: 'visible' });
      expect(await box.locator('h2').textContent()).toBe(
        "Loopback self-test: shows this machine's speed, not your line",
      );
      expect(await box.textContent()).toMatch(/not sent to Home Assistant/);
      const snippets = await box.locator('pre').allTextContents();
      expect(snippets.some((x) => x.includes('control_url: https://c01.netztest.at/RMBTControlServer'))).toBe(
        true,
      );
      expect(snippets.some((x) => x.includes('type: btest'))).toBe(true);
      const terms = await box.locator('a').evaluateAll((as) => as.map((a) => (a as HTMLAnchorElement).href));
      expect(terms).toContain('https://www.rtr.at/en/tk/rtrnetztesttermsofuse');
      await done;
      await page.reload();
      const card = page.locator('article[data-target="loopback"]');
      await card.locator('.pill.ok').waitFor();
      expect(await card.locator('h2').textContent()).toBe('Loopback self-test');
      // loopback pings are tens of microseconds: never "0.0"
      const ping = await card.locator('.fig.ping b').textContent();
      expect(ping).not.toBe('0.0');
      expect(Number.parseFloat(ping!.replace('< ', ''))).toBeGreaterThan(0);
      await page.screenshot({ path: join(SCREENS, 'selftest-light.png'), fullPage: true });
      await ctx.close();
    } finally {
      await first.close();
    }
  }, 90_000);
  it('Served: tests a client runs against serve show in their own section, live, and open their detail', async () => {
    const s = loadSettings({
      flags: {
        general: { data_dir: tempDir(), log_level: 'silent', engine: 'js' },
        service: { busy_check: 'off', run_on_start: 'false' },
        web: { bind: '127.0.0.1', port: '0' },
        mqtt: { enabled: 'off' },
        btest_server: { enabled: 'true', bind: '127.0.0.1', auth: 'none', udp_port_start: '39500' },
      },
      env: {
        BANDWIDTH_PROBE_TARGETS: JSON.stringify([
          { id: 'wan', name: 'WAN', type: 'btest', host: '127.0.0.1:9', enabled: false },
        ]),
      },
    });
    const served = await startService(s, createLogger('silent'), {
      version: 'e2e',
      ephemeralServerPorts: true,
    });
    const client = (over: Record<string, string>) =>
      measureBtest(
        loadSettings({
          flags: {
            btest: {
              host: `127.0.0.1:${served.inbound!.btest!.port}`,
              duration: '1',
              loaded_latency: 'false',
              ...over,
            },
          },
        }).btest,
        { engine: new JsEngine(), general: s.general },
      );
    try {
      expect((await client({ direction: 'receive' })).error).toBeUndefined();
      const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 }, colorScheme: 'light' });
      const page = await ctx.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${served.webPort}/`);
      const box = page.locator('#served');
      await box.waitFor({ state: 'visible' });
      expect(await page.locator('#served-servers').textContent()).toMatch(
        new RegExp(`^btest on TCP ${served.inbound!.btest!.port} \\(UDP 39500–39503\\), 1 test, 0 refused`),
      );
      await page.locator('#served-runs tbody tr[data-run]').first().waitFor();
      // a second test while the page is open arrives by itself (the SSE "inbound" event)
      expect(
        (await client({ protocol: 'udp', direction: 'send', local_tx_speed: '20000000' })).error,
      ).toBeUndefined();
      await page.waitForFunction(
        () => document.querySelectorAll('#served-runs tbody tr[data-run]').length === 2,
        null,
        {
          timeout: 10_000,
        },
      );
      const rows = await page
        .locator('#served-runs tbody tr[data-run]')
        .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
      // newest first: the UDP upload, then the TCP download, both from 127.0.0.1
      expect(rows[0]!.slice(1, 4)).toEqual(['127.0.0.1', 'btest udp', 'peer uploads']);
      expect(rows[0]![4]).toBe('–');
      expect(rows[0]![5]).toMatch(/^\d+(\.\d+)? Mbit\/s$/);
      expect(rows[1]!.slice(1, 4)).toEqual(['127.0.0.1', 'btest tcp', 'peer downloads']);
      expect(rows[1]![4]).toMatch(/bit\/s$/);
      expect(Number.parseFloat(rows[1]![6]!)).toBeGreaterThan(0);
      // the measured history leaves them out
      expect(await page.locator('#runs tbody tr[data-run]').count()).toBe(0);
      expect(await page.locator('#served-csv').getAttribute('href')).toMatch(
        /^api\/export\.csv\?.*scope=inbound/,
      );
      expect(await page.locator('#export-csv').getAttribute('href')).toMatch(/scope=measured/);
      // a row opens the test's detail: who, how, and its per-second chart
      await page.locator('#served-runs tbody tr[data-run]').nth(1).click();
      await page.locator('#detail[open]').waitFor();
      const detail = await page.locator('#detail-body').textContent();
      expect(detail).toMatch(/^Served to 127\.0\.0\.1 · /);
      expect(detail).toMatch(/Peer127\.0\.0\.1 port \d+, to our port \d+/);
      expect(detail).toMatch(/Protocolbtest tcp, peer downloads, 1 connection/);
      expect(detail).toMatch(/Moved[\d.]+ MB sent to the peer, 0\.0 MB received/);
      await page.locator('#detail-chart canvas').first().waitFor();
      await page.screenshot({ path: join(SCREENS, 'served-detail.png') });
      await page.keyboard.press('Escape');
      await box.screenshot({ path: join(SCREENS, 'served-light.png') });
      expect(errors).toEqual([]);
      await ctx.close();
    } finally {
      await served.close();
    }
  }, 90_000);
});
