// Slabs: the slabinfo table (sortable, with Loss as tools/mm/slabinfo computes it); a
// cache's slabs grouped CPU slab / per-CPU partial / node partial / full, each a strip of
// objects; an object's owner track and hex dump (GET …/slabs, …/slabs/{cache},
// …/slabs/{cache}/objects/{addr}).

import { fmt, h, size } from './dom.js';

const $ = (id) => document.getElementById(id);

const COLUMNS = [
  ['name', 'Name'], ['object_size', 'Objsize'], ['size', 'Slot'], ['active_objs', 'Active'],
  ['num_objs', 'Objects'], ['objs_per_slab', 'Obj/slab'], ['order', 'O'], ['slabs', 'Slabs'],
  ['partial', 'Partial'], ['cpu_slabs', 'CPU'], ['total_bytes', 'Space'], ['loss', 'Loss'], ['debug', 'Debug'],
];

const GROUPS = [['cpu', 'CPU slab'], ['cpu_partial', 'per-CPU partial'], ['node_partial', 'node partial'], ['full', 'full']];

const OBJECT_STATE = { a: 'allocated', f: 'free', p: 'poison', r: 'redzone' };

const SLOT_COLOURS = { redzone: '#d94040', track: '#8c7a55', padding: '#777777', freeptr: '#c8c8c8' };
const STATE_COLOURS = { allocated: '#4aa3ff', free: '#3a4a5a', poison: '#b070ff', redzone: '#d94040' };

/** An object slot drawn as its byte layout: red zones, the object (coloured by its
 *  state), owner tracks, padding. */
function slotGradient(cache, state) {
  const layout = cache.layout || [];
  if (layout.length <= 1 || !cache.size) return null;
  const stops = [];
  for (const part of layout) {
    const colour = part.kind === 'object' ? STATE_COLOURS[state] : SLOT_COLOURS[part.kind] ?? '#555555';
    const a = (100 * part.offset) / cache.size;
    const b = (100 * (part.offset + part.len)) / cache.size;
    stops.push(`${colour} ${a.toFixed(2)}%`, `${colour} ${b.toFixed(2)}%`);
  }
  return `width:${Math.min(48, Math.max(14, Math.round(cache.size / 16)))}px;background:linear-gradient(to right, ${stops.join(', ')})`;
}

/** The Slabs view. */
export class SlabsView {
  constructor(app) {
    this.app = app;
    this.watches = ['slabs'];
    this.rows = [];
    this.sortKey = 'total_bytes';
    this.descending = true;
    this.selected = null;
    this.touched = new Set();
  }

  async refresh() {
    this.rows = await this.app.session.json('slabs');
    this.renderTable();
    if (this.selected !== null) await this.showCache(this.selected).catch(() => {});
  }

  /** Caches a command touched (names from its `touched` list) are marked in the table. */
  markTouched(names) {
    this.touched = new Set(names);
  }

  renderTable() {
    const rows = [...this.rows].sort((a, b) => {
      const x = a[this.sortKey];
      const y = b[this.sortKey];
      const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
      return this.descending ? -c : c;
    });
    const head = h('tr', {}, COLUMNS.map(([key, label]) => h('th', {
      'aria-sort': key === this.sortKey ? (this.descending ? 'descending' : 'ascending') : 'none',
    }, h('button', { type: 'button', onclick: () => this.sortBy(key), text: label + (key === this.sortKey ? (this.descending ? ' ▼' : ' ▲') : '') }))));
    const body = rows.map((r) => h('tr', {
      class: [r.name === this.selected ? 'sel' : '', this.touched.has(r.name) ? 'touched' : ''].join(' ').trim() || null,
      'data-cache': r.name,
    }, COLUMNS.map(([key], i) => {
      const v = r[key];
      const text = key === 'total_bytes' || key === 'loss' ? size(v) : typeof v === 'number' ? fmt(v) : String(v ?? '');
      return i === 0
        ? h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => this.showCache(r.name), text }))
        : h('td', { text });
    })));
    $('slabinfo').replaceChildren(h('thead', {}, head), h('tbody', {}, body));
  }

  sortBy(key) {
    if (this.sortKey === key) this.descending = !this.descending;
    else { this.sortKey = key; this.descending = key !== 'name'; }
    this.renderTable();
  }

  /** A cache's slabs, each a strip of its objects. */
  async showCache(name) {
    this.selected = name;
    const c = await this.app.session.json(`slabs/${encodeURIComponent(name)}`);
    const layout = (c.layout || []).map((l) => `${l.kind} ${l.len}`).join(' · ');
    const groups = GROUPS.map(([key, label]) => {
      const slabs = c.groups?.[key] || [];
      return h('div', { class: 'slabgroup', 'data-group': key },
        h('b', { text: `${label}: ${slabs.length} slab${slabs.length === 1 ? '' : 's'}` }),
        slabs.slice(0, 64).map((s) => this.strip(c, s)),
        slabs.length > 64 ? h('p', { class: 'dim', text: `… and ${slabs.length - 64} more` }) : null);
    });
    $('cache').replaceChildren(
      h('h3', { text: `${c.name}: ${c.object_size}-byte objects in ${c.size}-byte slots, ${c.objs_per_slab} per order-${c.order} slab` }),
      h('p', { class: 'dim', text: `slot layout: ${layout || 'object only'}; ${c.slab_padding} bytes unused at the end of each slab` }),
      h('p', { class: 'legend' },
        ['allocated', 'free', 'poison', 'redzone', 'padding'].map((k) => h('span', {}, h('i', { class: `sw obj ${k}` }), k === 'poison' ? 'free, poison intact' : k === 'redzone' ? 'red zone / poison damaged' : k))),
      ...groups);
    this.renderTable();
  }

  /** One slab: a button per object, then its padding. */
  strip(cache, slab) {
    // `objects_state` is what the server sends; docs/SERVE_API.md names it `objects`.
    const letters = typeof slab.objects_state === 'string' ? slab.objects_state : typeof slab.objects === 'string' ? slab.objects : '';
    const objects = [...letters].map((letter, i) => {
      const state = OBJECT_STATE[letter] ?? 'free';
      return h('button', {
        type: 'button', class: `obj ${state}`, title: `object ${i}: ${state}`,
        style: slotGradient(cache, state),
        'aria-label': `${cache.name} slab pfn ${slab.pfn} object ${i} ${state}`,
        'data-index': i,
        onclick: (e) => this.showObject(cache, slab, i, e.currentTarget),
      });
    });
    if (cache.slab_padding > 0) objects.push(h('span', { class: 'obj padding', title: `${cache.slab_padding} bytes of padding` }));
    return h('div', { class: 'strip', 'data-pfn': slab.pfn, title: `slab at pfn ${slab.pfn}, ${slab.inuse} in use` },
      h('span', { class: 'dim', text: `pfn 0x${slab.pfn.toString(16)}${slab.cpu !== undefined && slab.cpu !== null ? ` cpu${slab.cpu}` : ''} ` }),
      objects);
  }

  /** An object's owner track and hex dump; its slab lit on the map. */
  async showObject(cache, slab, index, button) {
    document.querySelectorAll('.strip .obj.sel').forEach((b) => b.classList.remove('sel'));
    button.classList.add('sel');
    const addr = BigInt(slab.addr) + BigInt(index) * BigInt(cache.size);
    const out = $('object');
    this.app.highlight([{ pfn: slab.pfn, pages: slab.pages }]);
    try {
      const o = await this.app.session.json(`slabs/${encodeURIComponent(cache.name)}/objects/0x${addr.toString(16)}`);
      const track = (t, what) => (t ? `${what} by ${t.caller} on cpu ${t.cpu} pid ${t.pid} at ${t.when}` : `${what}: no track (boot with slab_debug=U)`);
      const freeTrack = o.free_track !== undefined ? o.free_track : typeof o.free === 'object' ? o.free : null;
      out.textContent = `${o.cache} object ${o.index} at ${o.addr} (slot ${o.slot ?? o.addr}): ${o.state}\n${track(o.alloc, 'allocated')}\n${track(freeTrack, 'freed')}\n\n${o.hex}`;
    } catch (e) {
      out.textContent = `object 0x${addr.toString(16)}: ${e.message}`;
    }
  }
}
