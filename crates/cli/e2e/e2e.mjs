// End-to-end test of the kmemlab explorer page in the system's headless Chromium, driven
// by playwright-core (no browser download: Debian's /usr/bin/chromium).
//
//   node e2e.mjs http://127.0.0.1:PORT
//
// Environment: KMEMLAB_CHROMIUM (default /usr/bin/chromium), KMEMLAB_SCREENSHOTS (a
// directory for one PNG per view; default ../../../target/e2e-screenshots),
// KMEMLAB_TRACE (the trace to upload; default the repository's SLUB trace).
//
// No timed assertions: every wait has a generous timeout, and the time to interactive is
// measured and printed, never asserted.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const url = process.argv[2];
if (!url) {
  console.error('usage: node e2e.mjs http://127.0.0.1:PORT');
  process.exit(2);
}
const executablePath = process.env.KMEMLAB_CHROMIUM || '/usr/bin/chromium';
const shots = resolve(process.env.KMEMLAB_SCREENSHOTS || join(here, '../../../target/e2e-screenshots'));
const trace = resolve(process.env.KMEMLAB_TRACE || join(here, '../../../tests/data/traces/linux-3.5-i386-boot-slub.trace'));
const WAIT = 120_000; // generous: the CI machine has two cores shared with other work

const results = [];
const measured = {};

/** Run one named step; a failure is recorded and the remaining steps still run. */
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

/** A screenshot of the window, the map shown whole (as a visitor first sees it). */
async function shot(page, name) {
  await page.evaluate(() => {
    const map = window.kmemlab.map;
    if (map.scale > map.minScale) { map.fitWhole(); map.draw(); }
  });
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

/** Show a view by clicking its tab. */
async function view(page, name) {
  await page.click(`#tab-${name}`);
  await page.waitForSelector(`#view-${name}:not([hidden])`);
}

/** Wait until the map shows at least the given generation of the machine. */
async function mapAt(page, generation) {
  await page.waitForFunction(
    (g) => Number(document.body.dataset.framesGeneration) >= g,
    generation, { timeout: WAIT });
}

/** Run a console line through the page (as typed) and return the server's answer. */
async function consoleRun(page, line) {
  return page.evaluate((l) => window.kmemlab.views.console.run(l), line);
}

/** The frame state code, and the colour the map paints for it, after clearing highlights. */
async function cell(page, pfn) {
  return page.evaluate((p) => {
    const app = window.kmemlab;
    app.highlight([]);
    app.map.show(p);
    const r = app.map.clientRect(p);
    const c = app.map.canvas;
    const box = c.getBoundingClientRect();
    const x = Math.floor((r.x - box.left) * c.width / box.width + 1);
    const y = Math.floor((r.y - box.top) * c.height / box.height + 1);
    const px = c.getContext('2d').getImageData(x, y, 1, 1).data;
    const painted = ((255 << 24) | (px[2] << 16) | (px[1] << 8) | px[0]) >>> 0;
    return { state: app.map.states[p], painted, expected: app.map.colourOf(p) };
  }, pfn);
}

/** In the page: visible, enabled controls whose text contrast is under 4.5:1 (WCAG AA),
 *  against the first opaque background behind them. */
function contrastProblems() {
  const parse = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.backgroundImage !== 'none') return null;
      const c = parse(s.backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.querySelectorAll('button, input, select, summary, label, [role=tab]')) {
    if (el.disabled || !el.offsetParent || !(el.textContent.trim() || el.value)) continue;
    const bg = background(el);
    if (!bg) continue;
    const fg = parse(getComputedStyle(el).color).slice(0, 3);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) out.push(`${el.tagName.toLowerCase()}#${el.id || ''}.${el.className || ''} "${(el.textContent || el.value).trim().slice(0, 30)}": ${ratio.toFixed(2)}`);
  }
  return out;
}

async function main() {
  mkdirSync(shots, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'kmemlab-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(WAIT);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });

  try {
    await step('page loads and becomes interactive', async () => {
      const t0 = Date.now();
      await page.goto(url);
      await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT });
      measured.wallMs = Date.now() - t0;
      measured.readyMs = Number(await page.getAttribute('body', 'data-ready-ms'));
      const pages = await page.evaluate(() => window.kmemlab.map.pages);
      assert.ok(pages > 0, 'the map has frames');
      measured.pages = pages;
      await page.waitForSelector('#zones .zone');
      await shot(page, 'map-zones');
    });

    await step('works at 1280x800: nothing wider than the window', async () => {
      const { scrollWidth, mapWidth, panelRight } = await page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        mapWidth: document.getElementById('map').getBoundingClientRect().width,
        panelRight: document.querySelector('.panelcol').getBoundingClientRect().right,
      }));
      assert.ok(scrollWidth <= 1280, `page is ${scrollWidth}px wide at 1280`);
      assert.ok(mapWidth >= 400, `map is ${mapWidth}px wide`);
      assert.ok(panelRight <= 1280, `the views end at ${panelRight}px`);
    });

    await step('hover and click a map cell', async () => {
      const box = await page.locator('#map').boundingBox();
      await page.mouse.move(box.x + box.width / 3, box.y + box.height / 3);
      const hover = await page.textContent('#map-hover');
      assert.match(hover, /pfn 0x[0-9a-f]+ · phys 0x[0-9a-f]+ · zone \w+/);
      await page.mouse.click(box.x + box.width / 3, box.y + box.height / 3);
      await page.waitForFunction(() => document.getElementById('map-info').textContent.length > 0);
      assert.match(await page.textContent('#map-info'), /pfn/);
      // The pageblock overlay brings the migrate-type plane: hover then names the type.
      await page.check('#map-overlay');
      await page.waitForFunction(() => window.kmemlab.map.migrate !== null);
      await page.mouse.move(box.x + box.width / 3 + 1, box.y + box.height / 3);
      assert.match(await page.textContent('#map-hover'), /pageblock (Unmovable|Movable|Reclaimable|HighAtomic|Isolate)/);
      await shot(page, 'map-pageblocks');
      await page.uncheck('#map-overlay');
    });

    await step('console: commands change the map cells of their frames', async () => {
      await view(page, 'console');
      const alloc = await consoleRun(page, 'p = alloc_pages GFP_KERNEL 2');
      assert.equal(alloc.outcome.ok, true, JSON.stringify(alloc.outcome));
      const block = alloc.touched[0];
      assert.equal(block.pages, 4, JSON.stringify(alloc.touched));
      await mapAt(page, alloc.generation);
      for (let i = 0; i < 4; i++) {
        const c = await cell(page, block.pfn + i);
        assert.equal(c.state, 0x34, `pfn ${block.pfn + i} is allocated on the map`);
        assert.equal(c.painted, c.expected, 'the canvas shows the allocated colour');
      }
      const before = await cell(page, block.pfn);
      const freed = await consoleRun(page, '__free_pages p 2');
      assert.equal(freed.outcome.ok, true, JSON.stringify(freed.outcome));
      await mapAt(page, freed.generation);
      const after = await cell(page, block.pfn);
      assert.ok(after.state === 0x20 || (after.state >= 0x10 && after.state <= 0x1a), `freed pfn shows state ${after.state}`);
      assert.notEqual(after.painted, before.painted, 'the cell changed colour');

      const k = await consoleRun(page, 'a = kmalloc 100 GFP_KERNEL');
      assert.equal(k.outcome.ok, true);
      assert.match(k.touched[0].what, /kmalloc-128/);
      await mapAt(page, k.generation);
      const slab = await cell(page, k.touched[0].pfn);
      assert.equal(slab.state, 0x30, 'the object\'s slab page is a slab cell');
      const out = await page.textContent('#console-out');
      assert.match(out, /a = 0x[0-9a-f]+ {2}\(kmalloc-128 object/);
      await page.fill('#console-in', 'cat /proc/buddyinfo');
      await page.press('#console-in', 'Enter');
      await page.waitForFunction(() => /Node 0, zone/.test(document.getElementById('console-out').textContent));
      // A double free: the kernel's splat goes to the dmesg pane, the shell's line to the console.
      await consoleRun(page, 'kfree a');
      const twice = await consoleRun(page, '! kfree a');
      assert.equal(twice.outcome.ok, true, 'the second kfree failed as expected');
      await page.waitForFunction(() => /kernel BUG at mm\/slub\.c:\d+!/.test(document.getElementById('dmesg').textContent));
      assert.match(await page.textContent('#console-out'), /failed as expected: .*double free/);
      await shot(page, 'console');
    });

    await step('keyboard only: tab to the console, complete and run a command', async () => {
      await view(page, 'zones');
      await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
      await page.focus('body');
      // Tab reaches the tab list (its selected tab: the ARIA roving tab stop) ...
      let found = false;
      for (let i = 0; i < 80 && !found; i++) {
        await page.keyboard.press('Tab');
        found = await page.evaluate(() => document.activeElement?.getAttribute('role') === 'tab');
      }
      assert.ok(found, 'Tab reaches the tab list');
      const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
      assert.notEqual(outline, 'none', 'the focused tab shows its focus');
      // ... the arrow keys walk it to the Console tab, Enter shows it ...
      for (let i = 0; i < 10 && await page.evaluate(() => document.activeElement?.id) !== 'tab-console'; i++) {
        await page.keyboard.press('ArrowRight');
      }
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'tab-console');
      await page.keyboard.press('Enter');
      assert.equal(await page.getAttribute('body', 'data-view'), 'console');
      // ... and Tab goes on into the console's input.
      found = false;
      for (let i = 0; i < 20 && !found; i++) {
        await page.keyboard.press('Tab');
        found = await page.evaluate(() => document.activeElement?.id === 'console-in');
      }
      assert.ok(found, 'Tab reaches the console input');
      // Tab completes as far as the commands agree (kmem_cache_alloc, _alloc_bulk), then
      // the whole name once it is unique.
      await page.keyboard.type('b = kmem_cache_a');
      await page.keyboard.press('Tab');
      assert.equal(await page.inputValue('#console-in'), 'b = kmem_cache_alloc');
      await page.keyboard.type('_b');
      await page.keyboard.press('Tab');
      assert.equal(await page.inputValue('#console-in'), 'b = kmem_cache_alloc_bulk ');
      await page.keyboard.press('Control+A');
      await page.keyboard.type('kb = kzalloc 300 GFP_KERNEL');
      await page.keyboard.press('Enter');
      await page.waitForFunction(() => /kb = 0x[0-9a-f]+/.test(document.getElementById('console-out').textContent));
      await page.keyboard.press('ArrowUp');
      assert.equal(await page.inputValue('#console-in'), 'kb = kzalloc 300 GFP_KERNEL', 'history recalls the line');
      await page.keyboard.press('Control+A');
      await page.keyboard.press('Delete');
    });

    await step('console: a command\'s round trip with the map updated (measured, not asserted)', async () => {
      await view(page, 'console');
      // Timed inside the page (no test-driver hops): from sending the line to the map
      // painted at the generation the answer names.
      const times = await page.evaluate(async () => {
        const app = window.kmemlab;
        const out = [];
        for (let i = 0; i < 20; i++) {
          const line = i % 2 === 0 ? 'rt = alloc_pages GFP_KERNEL 0' : '__free_pages rt 0';
          const t0 = performance.now();
          const r = await app.views.console.run(line);
          while (Number(document.body.dataset.framesGeneration) < r.generation) {
            await new Promise((done) => requestAnimationFrame(done));
          }
          out.push(performance.now() - t0);
        }
        return out;
      });
      assert.equal(times.length, 20);
      times.sort((a, b) => a - b);
      measured.roundTrip = { median: Math.round(times[10]), max: Math.round(times[19]) };
    });

    await step('vmalloc: an area\'s train has as many physical runs as info reports', async () => {
      // Scatter the free lists a little first, so that the train has several runs.
      for (let i = 0; i < 6; i++) await consoleRun(page, `x${i} = alloc_pages GFP_KERNEL 0`);
      for (let i = 0; i < 6; i += 2) await consoleRun(page, `__free_pages x${i} 0`);
      const v = await consoleRun(page, 'v = vmalloc 200K');
      assert.equal(v.outcome.ok, true, JSON.stringify(v.outcome));
      const info = await consoleRun(page, 'info v');
      const runs = info.outcome.result.phys_runs;
      assert.ok(runs >= 1);
      await view(page, 'vmalloc');
      const area = `#vmap-line .area[data-start="${v.outcome.result}"]`;
      await page.waitForSelector(area);
      await page.click(area);
      await page.waitForSelector('#train-runs');
      const shown = Number(await page.getAttribute('#train-runs', 'data-runs'));
      assert.equal(shown, runs, `the train shows ${shown} runs, info says ${runs}`);
      assert.equal(Number(await page.getAttribute('#train-runs', 'data-pages')), info.outcome.result.pfns.length);
      const lit = await page.evaluate(() => Number(document.body.dataset.highlighted));
      assert.equal(lit, info.outcome.result.pfns.length, 'every frame of the area is lit on the map');
      const lines = await page.$$eval('#overlay line', (l) => l.length);
      assert.ok(lines > 0, 'lines join the cars to the map');
      // A click on one of its frames on the map names the area and the page's index.
      const pfn = info.outcome.result.pfns[3];
      const at = await page.evaluate((p) => {
        window.kmemlab.map.show(p);
        const r = window.kmemlab.map.clientRect(p);
        return { x: r.x + r.size / 2, y: r.y + r.size / 2 };
      }, pfn);
      await page.mouse.click(at.x, at.y);
      await page.waitForFunction((a) => document.getElementById('map-info').textContent.includes(`page 3 (offset 0x3000) of the vmalloc area ${a}`),
        v.outcome.result);
      await page.click('#train .car[data-pfn]');
      await page.waitForSelector('#walk .lvl');
      const levels = await page.$$eval('#walk .lvl', (l) => l.map((e) => e.dataset.level));
      assert.ok(levels.length >= 4, `walk has ${levels.length} levels`);
      await shot(page, 'vmalloc');
    });

    await step('slabs: sort by Loss, open a cache, an object\'s track and hex dump', async () => {
      await view(page, 'slabs');
      await page.waitForSelector('#slabinfo tbody tr');
      await page.click('#slabinfo th button:text("Loss")');
      await page.click('#slabinfo tr[data-cache="kmalloc-128"] button');
      await page.waitForSelector('#cache .strip .obj.allocated');
      const groups = await page.$$eval('#cache .slabgroup', (g) => g.map((e) => e.dataset.group));
      assert.deepEqual(groups, ['cpu', 'cpu_partial', 'node_partial', 'full']);
      await page.click('#cache .strip .obj.allocated');
      await page.waitForFunction(() => /0x[0-9a-f]+: /.test(document.getElementById('object').textContent));
      await shot(page, 'slabs');
    });

    await step('zones and CPUs views', async () => {
      await view(page, 'zones');
      await page.waitForSelector('#buddy .bars');
      await view(page, 'cpus');
      await page.waitForSelector('#cpus .cpu');
      await shot(page, 'cpus');
    });

    await step('tour: ten steps, each verdict shown', async () => {
      await view(page, 'tour');
      await page.click('#tour-all');
      await page.waitForFunction(
        () => [...document.querySelectorAll('#tour-steps li')].every((li) => li.dataset.verdict),
        null, { timeout: 600_000 });
      const shown = await page.$$eval('#tour-steps li', (lis) => lis.map((li) => ({
        id: li.dataset.claim, verdict: li.querySelector('.verdict').textContent,
        measured: li.querySelector('.measured').textContent,
      })));
      assert.equal(shown.length, 10);
      assert.deepEqual(shown.map((s) => s.id), ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'Q1', 'Q2', 'Q3']);
      measured.tour = shown.map((s) => `${s.id}:${s.verdict}`).join(' ');
      for (const s of shown) {
        assert.ok(['held', 'n/a'].includes(s.verdict), `claim ${s.id}: ${s.verdict} (${s.measured})`);
        assert.match(s.measured, /^measured: ./, `claim ${s.id} shows its measured figures`);
      }
      await page.click('#tour-A button.evidence');
      const lit = await page.evaluate(() => Number(document.body.dataset.highlighted));
      assert.ok(lit > 0, 'claim A lights its frames');
      await shot(page, 'tour');
      // On the machine the tour aged, a vmalloc area's pages lie scattered: its train.
      // (The server charges an oops that tour step D provokes on purpose to the next
      // command, so the area is found from what the command touched.)
      const w = await consoleRun(page, 'w = vmalloc 128K');
      const start = w.outcome.result ?? w.touched?.[0]?.addr;
      if (start) {
        await view(page, 'vmalloc');
        const area = `#vmap-line .area[data-start="${start}"]`;
        await page.waitForSelector(area);
        await page.click(area);
        await page.waitForSelector(`#train .car[data-pfn="${w.touched[0].pfn}"]`);
        await shot(page, 'vmalloc-after-tour');
      }
    });

    await step('replay: upload the SLUB trace, scrub to the end, the report', async () => {
      if (!existsSync(trace)) {
        // The trace is in the repository (tests/data); a KMEMLAB_TRACE elsewhere may be missing.
        assert.notEqual(process.env.KMEMLAB_E2E, '1', `${trace} is missing`);
        console.log(`     (skipped: ${trace} is missing)`);
        return;
      }
      await view(page, 'replay');
      await page.setInputFiles('#replay-file', trace);
      await page.click('#replay-form button[type=submit]');
      await page.waitForSelector('body[data-replay-events]', { timeout: 600_000 });
      const events = Number(await page.getAttribute('body', 'data-replay-events'));
      assert.ok(events > 1000, `${events} events`);
      const genBefore = await page.evaluate(() => window.kmemlab.generation);
      await page.focus('#replay-scrub');
      await page.keyboard.press('End');
      await page.waitForFunction((n) => Number(document.body.dataset.replayPosition) === n, events, { timeout: 600_000 });
      await page.waitForFunction((g) => Number(document.body.dataset.framesGeneration) > g, genBefore, { timeout: WAIT });
      await page.click('#replay-report');
      await page.waitForFunction(() => /Callsite/.test(document.getElementById('replay-text').textContent));
      await shot(page, 'replay');
    });

    await step('contrast: every control in every view reads at 4.5:1 or more', async () => {
      const low = [];
      for (const name of ['zones', 'slabs', 'vmalloc', 'cpus', 'console', 'tour', 'replay']) {
        await view(page, name);
        low.push(...await page.evaluate(contrastProblems));
      }
      assert.deepEqual(low, [], 'controls under 4.5:1');
    });

    await step('no errors in the page', async () => {
      assert.deepEqual(pageErrors, []);
    });
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }

  const failed = results.filter((r) => !r.ok).length;
  console.log(`time to interactive: ${measured.readyMs} ms after navigation (page's own clock); ${measured.wallMs} ms from goto to ready (test's clock); ${measured.pages} frames`);
  if (measured.tour) console.log(`tour: ${measured.tour}`);
  if (measured.roundTrip) {
    console.log(`command round trip with the map updated: median ${measured.roundTrip.median} ms, max ${measured.roundTrip.max} ms (20 commands)`);
  }
  console.log(`screenshots: ${shots}`);
  console.log(`e2e: ${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
