#!/usr/bin/env node
// Renders the add-on's icon.png (128×128) and logo.png from public/icon.svg with Debian's Chromium
// (playwright-core). Run by hand after changing the icon; the PNGs are committed.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const svg = readFileSync(join(root, 'public/icon.svg'), 'utf8');
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
const page = await browser.newPage({ deviceScaleFactor: 1 });
await page.setViewportSize({ width: 128, height: 128 });
await page.setContent(`<style>html,body{margin:0;background:transparent}svg{width:128px;height:128px;display:block}</style>${svg}`);
await page.screenshot({ path: join(root, 'icon.png'), omitBackground: true });
await page.setViewportSize({ width: 560, height: 128 });
await page.setContent(
  `<style>html,body{margin:0;background:transparent;font-family:system-ui,sans-serif}
   div{display:flex;align-items:center;gap:20px;height:128px;padding:0 12px}
   svg{width:104px;height:104px;flex-shrink:0}b{font-size:40px;color:#0b7285;white-space:nowrap}</style><div>${svg}<b>Bandwidth Probe</b></div>`,
);
await page.screenshot({ path: join(root, 'logo.png'), omitBackground: true });
await browser.close();
console.log('wrote icon.png and logo.png');
