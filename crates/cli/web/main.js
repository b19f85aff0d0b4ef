// The explorer page: boots a session, builds the views, and keeps them live from the
// session's server-sent events (docs/SERVE_API.md). No build step: plain ES modules.

import { Session, commandTable } from './api.js';
import { decodeFrames } from './frames.js';
import { h, linkAddresses } from './dom.js';
import { MemoryMap } from './map.js';
import { renderLegend, renderMigrateLegend } from './legend.js';
import { ZonesView } from './zones.js';
import { SlabsView } from './slabs.js';
import { VmallocView } from './vmalloc.js';
import { CpusView } from './cpus.js';
import { ConsoleView } from './console.js';
import { TourView } from './tour.js';
import { ReplayView } from './replay.js';

const $ = (id) => document.getElementById(id);

/** What every view shares: the session, the map, highlighting and the status line. */
class App {
  constructor(session) {
    this.session = session;
    this.generation = -1;
    this.views = {};
    this.current = 'zones';
    this.stale = new Set();
    this.map = new MemoryMap({
      canvas: $('map'),
      minimap: $('minimap'),
      hover: $('map-hover'),
      onPick: (pfn) => this.pickFrame(pfn),
    });
    this.framesBusy = null;
    this.framesAgain = false;
  }

  /** A message in the status line (errors in red). */
  status(text, isError = false) {
    const s = $('status');
    s.textContent = text;
    s.classList.toggle('error', isError);
  }

  /** Light frames on the map: ranges [{pfn, pages}], shown with the first in view. */
  highlight(ranges, { show = true } = {}) {
    const set = new Set();
    for (const r of ranges || []) {
      const n = Math.min(r.pages ?? 1, 1 << 20);
      for (let i = 0; i < n; i++) set.add(r.pfn + i);
    }
    this.map.highlight = set;
    if (show && ranges && ranges.length) this.map.show(ranges[0].pfn);
    else this.map.draw();
    document.body.dataset.highlighted = String(set.size);
  }

  /** The `info` facts of a clicked frame, under the map (addresses open their walk). */
  async pickFrame(pfn) {
    const out = $('map-info');
    try {
      const info = await this.session.json(`info/pfn:${pfn}`);
      const owner = await this.ownerOf(pfn).catch(() => null);
      out.replaceChildren(
        ...(owner ? [owner, '\n'] : []),
        ...linkAddresses(`${info.message}\n${JSON.stringify(info.result, null, 1)}`, (a) => this.walk(a)));
    } catch (e) {
      out.textContent = `pfn 0x${pfn.toString(16)}: ${e.message}`;
    }
  }

  /** Who owns a frame, beyond its struct page: the slab cache (from the frames' cache
   *  plane) or the vmalloc area, page index and caller (searched among the areas). */
  async ownerOf(pfn) {
    const state = this.map.states[pfn];
    if (state === 0x30 && this.map.cache?.[pfn] > 0) {
      const name = this.map.caches[this.map.cache[pfn] - 1];
      if (!name) return null;
      return h('span', {}, 'slab page of cache ', h('button', { type: 'button', class: 'addr',
        onclick: () => { this.select('slabs'); this.views.slabs.showCache(name); }, text: name }));
    }
    if (state !== 0x32) return null;
    const v = await this.session.json('vmalloc');
    for (const area of v.areas.filter((a) => a.state === 'busy').slice(0, 256)) {
      const t = await this.session.json(`vmalloc/${area.start}`);
      const page = t.pages.find((p) => p.pfn === pfn);
      if (!page) continue;
      return h('span', {}, `page ${page.index} (offset 0x${(page.index * 4096).toString(16)}) of the ${area.kind} area `,
        h('button', { type: 'button', class: 'addr', text: area.start,
          onclick: () => { this.select('vmalloc'); this.views.vmalloc.showTrain(area.start); } }),
        area.caller ? ` from ${area.caller}` : '');
    }
    return null;
  }

  /** Any address clicked anywhere: its page-table walk in the vmalloc view. */
  walk(addr) {
    this.select('vmalloc');
    document.getElementById('walk-addr').value = addr;
    return this.views.vmalloc.walk(addr);
  }

  /** Fetch and paint the frames (coalescing refreshes that arrive while one runs). */
  async refreshFrames() {
    if (this.framesBusy) { this.framesAgain = true; return this.framesBusy; }
    this.framesBusy = (async () => {
      do {
        this.framesAgain = false;
        const planes = this.map.overlay ? 'state,cache,migratetype' : 'state,cache';
        const [meta, raw] = await Promise.all([
          this.session.json('frames/meta'),
          this.session.bytes(`frames?planes=${planes}`),
        ]);
        const frames = decodeFrames(raw.data);
        this.meta = meta;
        this.map.setFrames(frames, meta);
        $('map-scale').textContent = `${frames.count.toLocaleString()} frames, ${meta.zones.map((z) => z.name).join(' · ')}`;
        document.body.dataset.framesGeneration = String(frames.generation);
      } while (this.framesAgain);
    })();
    try { await this.framesBusy; } finally { this.framesBusy = null; }
  }

  /** Refresh what changed: the map now, the shown view now, the others when shown. */
  async refresh(changed = ['frames', 'zones', 'slabs', 'vmalloc', 'cpus', 'replay']) {
    const jobs = [];
    if (changed.includes('frames')) jobs.push(this.refreshFrames());
    for (const [name, view] of Object.entries(this.views)) {
      if (!view.watches.some((w) => changed.includes(w))) continue;
      if (name === this.current) jobs.push(view.refresh());
      else this.stale.add(name);
    }
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) this.status(`refresh: ${failed.reason.message}`, true);
  }

  /** Show one view (tab), refreshing it if it missed changes. */
  select(name) {
    for (const tab of document.querySelectorAll('[role=tab]')) {
      const on = tab.dataset.view === name;
      tab.setAttribute('aria-selected', String(on));
      tab.tabIndex = on ? 0 : -1;
      $(`view-${tab.dataset.view}`).hidden = !on;
    }
    this.current = name;
    document.body.dataset.view = name;
    const view = this.views[name];
    if (view && (this.stale.delete(name) || !view.loaded)) {
      view.loaded = true;
      view.refresh().catch((e) => this.status(`${name}: ${e.message}`, true));
    }
    view?.shown?.();
  }

  /** The events of the session: refresh on every change, print console lines. */
  listen() {
    this.session.events((type, data) => {
      if (type === 'hello' || type === 'resync') {
        if (data.generation !== this.generation) this.refresh();
        this.generation = data.generation;
      } else if (type === 'change') {
        this.generation = data.generation;
        document.body.dataset.generation = String(data.generation);
        this.refresh(data.changed || undefined);
        if (data.console?.length) this.views.console.dmesg();
      } else if (type === 'console') {
        this.views.console.dmesg();
      } else if (type === 'gone') {
        this.status('this session has ended (deleted or idle too long): reload the page for a new machine', true);
      }
    });
  }
}

function bindTabs(app) {
  const tabs = [...document.querySelectorAll('[role=tab]')];
  tabs.forEach((tab, i) => {
    tab.addEventListener('click', () => app.select(tab.dataset.view));
    tab.addEventListener('keydown', (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      e.preventDefault();
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      app.select(next.dataset.view);
    });
  });
}

function bindMapTools(app) {
  $('map-zoom-in').addEventListener('click', () => app.map.zoom(1));
  $('map-zoom-out').addEventListener('click', () => app.map.zoom(-1));
  $('map-reset').addEventListener('click', () => { app.map.fitWhole(); app.map.draw(); });
  $('map-overlay').addEventListener('change', (e) => {
    app.map.overlay = e.target.checked;
    renderMigrateLegend($('mt-legend'), app.meta?.migratetypes || [], app.map.overlay);
    app.refreshFrames();
  });
  $('map-goto').addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    const pfn = Number(e.target.value.trim());
    if (Number.isInteger(pfn) && pfn >= 0 && pfn < app.map.pages) {
      app.map.show(pfn);
      app.pickFrame(pfn);
    } else {
      app.status(`'${e.target.value}' is not a pfn of this machine (0 … 0x${(app.map.pages - 1).toString(16)})`, true);
    }
  });
}

function sessionOptions() {
  const options = {};
  const params = new URLSearchParams(location.search);
  for (const [k, v] of params) {
    if (k === 'cpus' || k === 'seed') options[k] = Number(v);
    else if (['pci_hole', 'no_legacy_hole', 'init_on_alloc', 'init_on_free'].includes(k)) options[k] = v !== '0' && v !== 'false';
    else options[k] = v;
  }
  return options;
}

async function start() {
  const t0 = performance.now();
  let session;
  try {
    session = await Session.create(sessionOptions());
  } catch (e) {
    $('machine').textContent = `could not boot a machine: ${e.message}`;
    $('status').classList.add('error');
    return;
  }
  const booted = performance.now();
  window.addEventListener('pagehide', () => session.close());
  $('machine').textContent = session.info.summary;
  const app = new App(session);
  window.kmemlab = app; // for people poking in the devtools, and for the tests
  renderLegend($('legend'));
  const commands = await commandTable().catch(() => []);
  app.views = {
    zones: new ZonesView(app),
    slabs: new SlabsView(app),
    vmalloc: new VmallocView(app),
    cpus: new CpusView(app),
    console: new ConsoleView(app, commands),
    tour: new TourView(app),
    replay: new ReplayView(app),
  };
  bindTabs(app);
  bindMapTools(app);
  app.select('zones');
  await app.refreshFrames().catch((e) => app.status(`frames: ${e.message}`, true));
  app.listen();
  document.body.dataset.ready = 'true';
  // performance.now() counts from the navigation's start: the time to interactive.
  const ms = Math.round(performance.now());
  document.body.dataset.readyMs = String(ms);
  app.status(`ready ${ms} ms after navigation (machine booted in ${Math.round(booted - t0)} ms)`);
}

start();
