// The physical memory map: every page frame one cell, painted from a typed array of state
// codes into an ImageData (no per-cell drawing calls), with zoom, pan, a minimap, zone
// bands, a pageblock migrate-type overlay, hover facts and highlighted frames.

import { cacheColour, css, migrateColour, rgba, stateEntry, zoneColour } from './palette.js';

const ZONE_STRIP = 6;
const HIGHLIGHT = rgba(255, 211, 90); // pixels at the left of each row: the zone of its first frame

/** The map view: owns the canvas, the minimap and the hover line. */
export class MemoryMap {
  constructor({ canvas, minimap, hover, onPick }) {
    this.canvas = canvas;
    this.minimap = minimap;
    this.hover = hover;
    this.onPick = onPick;
    this.states = new Uint8Array(0);
    this.legend = [];
    this.colours = new Uint32Array(256);
    this.cacheColours = new Uint32Array(256);
    this.migrateColours = new Uint32Array(256);
    this.cache = null;
    this.zones = [];
    this.migrate = null;
    this.migrateNames = [];
    this.caches = [];
    this.overlay = false;
    this.highlight = new Set();
    this.cursor = 0;
    this.cols = 512; // cells per row of the logical grid
    this.scale = 1; // pixels per cell (a power of two, may be below 1)
    this.x0 = 0; // first column and row in view
    this.y0 = 0;
    this.bind();
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
  }

  /** Match the canvases' pixels to their size on the screen (no scaling blur). */
  resize() {
    const wrap = this.canvas.parentElement;
    const width = Math.max(200, Math.floor(wrap.clientWidth - this.minimap.offsetWidth - 6));
    const height = Math.max(200, Math.min(640, Math.floor(window.innerHeight - 290)));
    if (width === this.canvas.width && height === this.canvas.height) return;
    const whole = this.scale <= this.minScale;
    this.canvas.width = width;
    this.canvas.height = height;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    this.minimap.height = height;
    this.minimap.style.height = `${height}px`;
    if (this.pages === 0) return;
    if (whole) this.fitWhole();
    else this.clampView();
    this.draw();
  }

  /** New frames: the planes decoded from `GET …/frames` and the facts of `frames/meta`. */
  setFrames({ states, cache, migrate }, meta) {
    const first = this.states.length === 0 || states.length !== this.states.length;
    this.states = states;
    this.cache = cache || null;
    this.migrate = migrate || null;
    this.meta = meta;
    this.zones = meta.zones || [];
    this.migrateNames = meta.migratetypes || [];
    this.caches = meta.caches || [];
    for (let code = 0; code < 256; code++) {
      const e = stateEntry(code);
      this.legend[code] = e;
      this.colours[code] = e.colour;
      this.cacheColours[code] = code === 0 ? e.colour : cacheColour(code - 1);
      this.migrateColours[code] = migrateColour(code, this.migrateNames);
    }
    this.rank = null;
    if (first) this.fitWhole();
    this.draw();
  }

  /** Pages on the map. */
  get pages() { return this.states.length; }

  /** The logical grid and the whole-map scale: of the widths that are multiples of 64
   *  cells (so that pageblocks line up), the one showing the whole map largest. */
  fitWhole() {
    const n = Math.max(1, this.pages);
    const w = this.canvas.width - ZONE_STRIP;
    const h = this.canvas.height;
    let best = { scale: 0, cols: 64 };
    for (let cols = 64; cols <= 16384; cols += 64) {
      const scale = Math.min(w / cols, h / Math.ceil(n / cols), 32);
      if (scale > best.scale) best = { scale, cols };
      if (cols > n) break;
    }
    this.cols = best.cols;
    this.minScale = best.scale;
    this.scale = best.scale;
    this.x0 = 0;
    this.y0 = 0;
  }

  get rows() { return Math.ceil(this.pages / this.cols); }

  /** Zoom by a factor of two around a canvas point. */
  zoom(direction, px = this.canvas.width / 2, py = this.canvas.height / 2) {
    let next = direction > 0 ? this.scale * 2 : this.scale / 2;
    if (next < this.minScale) next = this.minScale;
    if (next > 64 || next === this.scale) return;
    const cx = this.x0 + (px - ZONE_STRIP) / this.scale;
    const cy = this.y0 + py / this.scale;
    this.scale = next;
    this.x0 = cx - (px - ZONE_STRIP) / next;
    this.y0 = cy - py / next;
    this.clampView();
    this.draw();
  }

  /** Move the view by cells. */
  pan(dx, dy) {
    this.x0 += dx;
    this.y0 += dy;
    this.clampView();
    this.draw();
  }

  /** Centre the view on a frame, zoomed in enough to see single cells. */
  show(pfn) {
    if (this.scale < 4) this.scale = 4;
    const { x, y } = this.cellOf(pfn);
    this.x0 = x - (this.canvas.width - ZONE_STRIP) / this.scale / 2;
    this.y0 = y - this.canvas.height / this.scale / 2;
    this.cursor = pfn;
    this.clampView();
    this.draw();
  }

  clampView() {
    const viewCols = (this.canvas.width - ZONE_STRIP) / this.scale;
    const viewRows = this.canvas.height / this.scale;
    this.x0 = Math.max(0, Math.min(this.x0, this.cols - viewCols));
    this.y0 = Math.max(0, Math.min(this.y0, this.rows - viewRows));
    if (this.scale <= this.minScale) { this.x0 = 0; this.y0 = 0; }
    this.x0 = Math.floor(this.x0);
    this.y0 = Math.floor(this.y0);
  }

  cellOf(pfn) { return { x: pfn % this.cols, y: Math.floor(pfn / this.cols) }; }

  /** The frame under a canvas pixel, or -1. */
  pfnAt(px, py) {
    if (px < ZONE_STRIP) return -1;
    const x = Math.floor(this.x0 + (px - ZONE_STRIP) / this.scale);
    const y = Math.floor(this.y0 + py / this.scale);
    if (x < 0 || x >= this.cols || y < 0) return -1;
    const pfn = y * this.cols + x;
    return pfn < this.pages ? pfn : -1;
  }

  /** Where a frame's cell is on the screen (client coordinates), or null out of view. */
  clientRect(pfn) {
    const { x, y } = this.cellOf(pfn);
    const px = ZONE_STRIP + (x - this.x0) * this.scale;
    const py = (y - this.y0) * this.scale;
    if (px < ZONE_STRIP || py < 0 || px >= this.canvas.width || py >= this.canvas.height) return null;
    const r = this.canvas.getBoundingClientRect();
    const k = r.width / this.canvas.width;
    return { x: r.left + px * k, y: r.top + py * k, size: Math.max(1, this.scale * k) };
  }

  zoneOf(pfn) {
    return this.zones.find((z) => pfn >= z.start_pfn && pfn < z.end_pfn);
  }

  /** The colour of one cell: its state, tinted by its pageblock's migrate type if asked. */
  colourOf(pfn) {
    const state = this.states[pfn];
    let c = state === 0x30 && this.cache ? this.cacheColours[this.cache[pfn]] : this.colours[state];
    if (this.overlay && this.migrate && this.migrate[pfn] !== 255) {
      c = blend(c, this.migrateColours[this.migrate[pfn]]);
    }
    if (this.highlight.size && this.highlight.has(pfn)) c = HIGHLIGHT;
    return c;
  }

  /** Paint the view and the minimap. */
  draw() {
    const t0 = performance.now();
    paint(this, this.canvas, this.scale, this.x0, this.y0, true);
    this.markHighlight();
    this.labelZones();
    const minScale = fitScale(this, this.minimap.width - ZONE_STRIP, this.minimap.height);
    paint(this, this.minimap, minScale, 0, 0, false);
    const g = this.minimap.getContext('2d');
    g.strokeStyle = '#ffd35a';
    g.lineWidth = 2;
    if (this.scale > this.minScale) g.strokeRect(
      ZONE_STRIP + this.x0 * minScale, this.y0 * minScale,
      Math.max(3, (this.canvas.width - ZONE_STRIP) / this.scale * minScale),
      Math.max(3, this.canvas.height / this.scale * minScale),
    );
    this.lastDrawMs = performance.now() - t0;
    this.canvas.dispatchEvent(new CustomEvent('mapdrawn'));
  }

  /** When cells are small, ring each lit frame so that a few pages show on a big map. */
  markHighlight() {
    if (this.scale >= 4 || this.highlight.size === 0 || this.highlight.size > 4096) return;
    const g = this.canvas.getContext('2d');
    g.strokeStyle = '#ffd35a';
    g.lineWidth = 1;
    const r = 3;
    for (const pfn of this.highlight) {
      const { x, y } = this.cellOf(pfn);
      const px = ZONE_STRIP + (x - this.x0 + 0.5) * this.scale;
      const py = (y - this.y0 + 0.5) * this.scale;
      if (px < ZONE_STRIP || py < 0 || px >= this.canvas.width || py >= this.canvas.height) continue;
      g.strokeRect(Math.round(px) - r + 0.5, Math.round(py) - r + 0.5, 2 * r, 2 * r);
    }
  }

  /** Each zone's name where its band starts (the zone strip at the left has its colour). */
  labelZones() {
    const g = this.canvas.getContext('2d');
    g.font = '11px sans-serif';
    let lastY = -20;
    for (const z of this.zones) {
      const y = (Math.floor(z.start_pfn / this.cols) - this.y0) * this.scale;
      if (y < -1 || y >= this.canvas.height) continue;
      const top = Math.max(0, Math.max(y, lastY + 14));
      const text = `${z.name} from pfn 0x${z.start_pfn.toString(16)}`;
      g.fillStyle = 'rgba(0,0,0,0.75)';
      g.fillRect(ZONE_STRIP + 2, top, g.measureText(text).width + 6, 13);
      g.fillStyle = css(zoneColour(z.name));
      g.fillText(text, ZONE_STRIP + 5, top + 10);
      lastY = top;
    }
  }

  /** The hover line of a frame: pfn, physical address, zone, state. */
  describe(pfn) {
    const state = this.states[pfn];
    let label = this.legend[state]?.label ?? 'unknown';
    if (state === 0x30 && this.cache && this.cache[pfn] > 0) {
      label = `slab ${this.caches[this.cache[pfn] - 1] ?? `cache #${this.cache[pfn] - 1}`}`;
    }
    const zone = this.zoneOf(pfn);
    const mt = this.migrate && this.migrate[pfn] !== 255 ? ` · pageblock ${this.migrateNames[this.migrate[pfn]] ?? '?'}` : '';
    const pageSize = this.meta?.page_size ?? 4096;
    return `pfn 0x${pfn.toString(16)} · phys 0x${(pfn * pageSize).toString(16)} · zone ${zone ? zone.name : '–'} · ${label}${mt}`;
  }

  bind() {
    const c = this.canvas;
    const at = (e) => {
      const r = c.getBoundingClientRect();
      return [(e.clientX - r.left) * c.width / r.width, (e.clientY - r.top) * c.height / r.height];
    };
    c.addEventListener('mousemove', (e) => {
      const pfn = this.pfnAt(...at(e));
      this.hover.textContent = pfn < 0 ? '' : this.describe(pfn);
    });
    c.addEventListener('click', (e) => {
      const pfn = this.pfnAt(...at(e));
      if (pfn >= 0) { this.cursor = pfn; this.onPick(pfn); }
    });
    c.addEventListener('wheel', (e) => {
      e.preventDefault();
      this.zoom(e.deltaY < 0 ? 1 : -1, ...at(e));
    }, { passive: false });
    let drag = null;
    c.addEventListener('pointerdown', (e) => { drag = { x: e.clientX, y: e.clientY, moved: false }; });
    window.addEventListener('pointerup', () => { drag = null; });
    c.addEventListener('pointermove', (e) => {
      if (!drag || e.buttons === 0) return;
      const k = c.width / c.getBoundingClientRect().width / this.scale;
      const dx = (drag.x - e.clientX) * k;
      const dy = (drag.y - e.clientY) * k;
      if (Math.abs(dx) + Math.abs(dy) >= 1) {
        drag.x = e.clientX; drag.y = e.clientY;
        this.pan(dx, dy);
      }
    });
    c.addEventListener('keydown', (e) => this.key(e));
    this.minimap.addEventListener('click', (e) => {
      const r = this.minimap.getBoundingClientRect();
      const s = fitScale(this, this.minimap.width - ZONE_STRIP, this.minimap.height);
      const x = ((e.clientX - r.left) * this.minimap.width / r.width - ZONE_STRIP) / s;
      const y = ((e.clientY - r.top) * this.minimap.height / r.height) / s;
      if (this.scale <= this.minScale) this.scale = this.minScale * 4;
      this.x0 = x - (c.width - ZONE_STRIP) / this.scale / 2;
      this.y0 = y - c.height / this.scale / 2;
      this.clampView();
      this.draw();
    });
  }

  /** Keyboard: arrows move the cursor frame, Enter picks it, + and − zoom. */
  key(e) {
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -this.cols, ArrowDown: this.cols };
    if (e.key in moves) {
      e.preventDefault();
      this.cursor = Math.max(0, Math.min(this.pages - 1, this.cursor + moves[e.key]));
      this.hover.textContent = this.describe(this.cursor);
      this.ensureVisible(this.cursor);
    } else if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      this.onPick(this.cursor);
    } else if (e.key === '+' || e.key === '=') {
      this.zoom(1);
    } else if (e.key === '-') {
      this.zoom(-1);
    }
  }

  ensureVisible(pfn) {
    const { x, y } = this.cellOf(pfn);
    const viewCols = (this.canvas.width - ZONE_STRIP) / this.scale;
    const viewRows = this.canvas.height / this.scale;
    if (x < this.x0 || x >= this.x0 + viewCols || y < this.y0 || y >= this.y0 + viewRows) {
      this.x0 = x - viewCols / 2;
      this.y0 = y - viewRows / 2;
      this.clampView();
    }
    this.draw();
  }
}

/** The scale showing the whole grid in w×h pixels. */
function fitScale(map, w, h) {
  return Math.min(w / map.cols, h / Math.max(1, map.rows));
}

/** Paint the grid at `scale` from (x0, y0) into a canvas through one ImageData. */
function paint(map, canvas, scale, x0, y0, withCursor) {
  const w = canvas.width;
  const h = canvas.height;
  const g = canvas.getContext('2d');
  const image = g.createImageData(w, h);
  const px = new Uint32Array(image.data.buffer);
  px.fill(rgba(0, 0, 0));
  const n = map.pages;
  if (n > 0) {
    if (scale >= 1) paintZoomedIn(map, px, w, h, scale, x0, y0);
    else paintZoomedOut(map, px, w, h, scale, x0, y0);
    paintZoneStrip(map, px, w, h, scale, y0);
  }
  g.putImageData(image, 0, 0);
  if (withCursor && n > 0 && scale >= 2) {
    const { x, y } = map.cellOf(map.cursor);
    g.strokeStyle = '#6cc4ff';
    g.lineWidth = 2;
    g.strokeRect(ZONE_STRIP + (x - x0) * scale, (y - y0) * scale, scale, scale);
  }
}

/** One cell is `scale` (≥ 1) pixels square; cells of 4 pixels or more get a dark edge. */
function paintZoomedIn(map, px, w, h, scale, x0, y0) {
  const edge = scale >= 4;
  const dark = rgba(0, 0, 0);
  const colOf = new Int32Array(w);
  const edgeCol = new Uint8Array(w);
  for (let x = ZONE_STRIP; x < w; x++) {
    colOf[x] = x0 + Math.floor((x - ZONE_STRIP) / scale);
    edgeCol[x] = edge && Math.floor((x - ZONE_STRIP + 1) / scale) !== Math.floor((x - ZONE_STRIP) / scale) ? 1 : 0;
  }
  for (let y = 0; y < h; y++) {
    const cy = y0 + Math.floor(y / scale);
    if (cy >= map.rows) break;
    const rowEdge = edge && Math.floor((y + 1) / scale) !== Math.floor(y / scale);
    for (let x = ZONE_STRIP; x < w; x++) {
      const cx = colOf[x];
      if (cx >= map.cols) break;
      const pfn = cy * map.cols + cx;
      if (pfn >= map.pages) break;
      px[y * w + x] = rowEdge || edgeCol[x] ? dark : map.colourOf(pfn);
    }
  }
}

/** One pixel covers several cells (scale < 1): it shows the most telling of them (the
 *  rarest kind first: anything allocated beats free, so one slab page among free pages
 *  shows). Every cell is looked at once. */
function paintZoomedOut(map, px, w, h, scale, x0, y0) {
  const rank = map.rank || (map.rank = rankOf(map));
  const lit = map.highlight.size > 0;
  const span = (i) => [Math.floor(i / scale), Math.floor((i + 1) / scale)];
  for (let y = 0; y < h; y++) {
    const [ya, yb] = span(y);
    if (y0 + ya >= map.rows) break;
    for (let x = ZONE_STRIP; x < w; x++) {
      const [xa, xb] = span(x - ZONE_STRIP);
      if (x0 + xa >= map.cols) break;
      let best = -1;
      let bestRank = -1;
      for (let cy = y0 + ya; cy < y0 + yb; cy++) {
        const base = cy * map.cols;
        for (let cx = x0 + xa; cx < x0 + xb && cx < map.cols; cx++) {
          const pfn = base + cx;
          if (pfn >= map.pages) break;
          const r = lit && map.highlight.has(pfn) ? 1000 : rank[map.states[pfn]];
          if (r > bestRank) { bestRank = r; best = pfn; }
        }
      }
      if (best >= 0) px[y * w + x] = map.colourOf(best);
    }
  }
}

function rankOf(map) {
  const rank = new Int32Array(256);
  const order = ['hole', 'free', 'reserved', 'pcp', 'other', 'page_cache', 'slab',
    'kmalloc_large', 'vmalloc', 'page_table', 'dma', 'swiotlb'];
  map.legend.forEach((entry, code) => {
    const i = order.indexOf(entry.kind);
    rank[code] = i < 0 ? 4 : i;
  });
  return rank;
}

/** The zone strip: each row's first frame's zone colour. */
function paintZoneStrip(map, px, w, h, scale, y0) {
  for (let y = 0; y < h; y++) {
    const row = y0 + Math.floor(y / scale);
    if (row >= map.rows) break;
    const zone = map.zoneOf(row * map.cols);
    const c = zone ? zoneColour(zone.name) : rgba(0, 0, 0);
    for (let x = 0; x < ZONE_STRIP - 1; x++) px[y * w + x] = c;
  }
}

function blend(a, b) {
  const mix = (s) => (((a >>> s) & 255) * 0.55 + ((b >>> s) & 255) * 0.45) & 255;
  return ((255 << 24) | (mix(16) << 16) | (mix(8) << 8) | mix(0)) >>> 0;
}
