import { mkdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BtestServer } from '../../src/btest/server.js';
import { loadSettings } from '../../src/config/load.js';
import { JsEngine } from '../../src/engine/jsEngine.js';
import { createLogger } from '../../src/log.js';
import { type Service, startService } from '../../src/main.js';
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
  const s = loadSettings({
    flags: {
      general: { data_dir: tempDir(), log_level: 'silent', engine: 'js' },
      service: { busy_check: 'off' },
      web: { bind: '127.0.0.1', port: '0' },
      mqtt: { enabled: 'off' },
    },
    env: {
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
    },
  });
  svc = await startService(s, createLogger('silent'), { version: 'e2e' });
  // A day of history for the charts: one real run, repeated at earlier times with varied figures.
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
      flags: h % 7 === 0 ? ['link_busy'] : [],
      ...(h === 5
        ? { status: 'failed', error: { code: 'BP_ERR_CONNECT', message: 'connection refused' } }
        : {}),
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
    expect(await card.locator('.fig.down b').textContent()).toMatch(/^\d+\.\d$/);
    await page.screenshot({ path: join(SCREENS, 'page-light.png'), fullPage: true });

    // one run's detail
    await page.locator('#runs tbody tr[data-run]').first().click();
    await page.locator('#detail[open]').waitFor();
    expect(await page.locator('#detail-body').textContent()).toMatch(/Engine/);
    await page.screenshot({ path: join(SCREENS, 'detail-light.png') });
    await page.keyboard.press('Escape');

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
    await phone.close();
  }, 60_000);
});
