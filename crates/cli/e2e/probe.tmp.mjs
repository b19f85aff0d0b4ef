import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
const url = process.argv[2];
const ctx = await chromium.launchPersistentContext(mkdtempSync('/tmp/kp-'), { executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 800 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
const page = ctx.pages()[0] || await ctx.newPage();
page.on('pageerror', (e) => console.log('PAGEERROR', e.stack || e));
page.on('console', (m) => console.log('CONSOLE', m.type(), m.text()));
const t0 = Date.now();
await page.goto(url);
await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 }).catch((e) => console.log('not ready', e.message));
console.log('ready', Date.now() - t0, await page.getAttribute('body', 'data-ready-ms'));
for (const l of (process.env.CMDS || '').split(';').filter(Boolean)) { await page.evaluate((x) => window.kmemlab.views.console.run(x), l); }
await page.waitForTimeout(500);
if (process.env.CLICK) { const [v0, sel] = process.env.CLICK.split('|'); await page.click(`#tab-${v0}`); await page.waitForTimeout(500); await page.click(sel); await page.waitForTimeout(800); await page.screenshot({ path: '/tmp/mock/click.png' }); }
for (const v of (process.argv[3] || 'zones').split(',')) {
  await page.click(`#tab-${v}`); await page.waitForTimeout(700);
  await page.screenshot({ path: `/tmp/mock/${v}.png` });
}
await ctx.close();
