// Zones and buddy lists: free pages against the watermarks, free blocks per order and
// migrate type, per-CPU list counts (GET …/zones).

import { fmt, h } from './dom.js';

const $ = (id) => document.getElementById(id);

/** The Zones view. */
export class ZonesView {
  constructor(app) {
    this.app = app;
    this.watches = ['zones', 'frames'];
  }

  async refresh() {
    const zones = await this.app.session.json('zones');
    $('zones').replaceChildren(...zones.map(gauge));
    $('buddy').replaceChildren(...zones.map(buddy));
    $('pcp').replaceChildren(...zones.map(pcp));
  }
}

/** Free pages of a zone on a gauge with its min / low / high marks. */
function gauge(z) {
  // A log scale: the watermarks are a few per mille of a zone, and still readable apart.
  const top = Math.max(z.managed, z.free, z.high, 1);
  const pct = (v) => `${Math.min(100, (100 * Math.log1p(v)) / Math.log1p(top)).toFixed(2)}%`;
  const state = z.free < z.min ? 'below min' : z.free < z.low ? 'below low' : z.free < z.high ? 'below high' : 'above high';
  return h('div', { class: 'zone', 'data-zone': z.name },
    h('div', { class: 'row' },
      h('b', { text: `Zone ${z.name}` }),
      h('span', { class: 'dim', text: `pfn ${hex(z.start_pfn)}–${hex(z.end_pfn)} · managed ${fmt(z.managed)} pages` }),
      h('span', { text: `free ${fmt(z.free)} (${state}) · min ${fmt(z.min)} · low ${fmt(z.low)} · high ${fmt(z.high)}` })),
    h('div', { class: 'gauge', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': top, 'aria-valuenow': z.free,
      title: 'free pages (log scale) against the min, low and high watermarks',
      'aria-label': `Zone ${z.name} free pages ${z.free} of ${top}; watermarks min ${z.min}, low ${z.low}, high ${z.high}` },
    h('div', { class: 'fill', style: `width:${pct(z.free)}` }),
    h('div', { class: 'mark min', style: `left:${pct(z.min)}`, title: 'min' }),
    h('div', { class: 'mark low', style: `left:${pct(z.low)}`, title: 'low' }),
    h('div', { class: 'mark high', style: `left:${pct(z.high)}`, title: 'high' })));
}

/** Buddyinfo as bars: a row per migrate type, a bar per order (log scale). */
function buddy(z) {
  const types = new Set();
  for (const a of z.free_area) for (const t of Object.keys(a.by_migratetype || {})) types.add(t);
  // The kernel's order of migrate types (include/linux/mmzone.h), empty rows left out.
  const kernelOrder = ['Unmovable', 'Movable', 'Reclaimable', 'HighAtomic', 'CMA', 'Isolate'];
  const rank = (t) => (kernelOrder.indexOf(t) + 100) % 100;
  const rows = [...types].sort((a, b) => rank(a) - rank(b))
    .filter((t) => z.free_area.some((a) => (a.by_migratetype?.[t] ?? 0) > 0));
  const max = Math.max(1, ...z.free_area.map((a) => a.nr_free));
  const scale = (n) => (n <= 0 ? 0 : (100 * Math.log2(1 + n)) / Math.log2(1 + max));
  const header = [h('span', { text: z.name }), ...z.free_area.map((a) => h('span', { text: `o${a.order}` }))];
  const line = (label, counts) => [
    h('span', { text: label }),
    ...counts.map((n, order) => h('div', { class: 'bar', title: `${label} order ${order}: ${n} blocks` },
      h('i', { style: `height:${scale(n)}%` }), h('b', { text: n ? String(n) : '' }))),
  ];
  return h('div', { class: 'bars', 'data-zone': z.name, 'aria-label': `Free blocks of zone ${z.name}` },
    header,
    line('all', z.free_area.map((a) => a.nr_free)),
    rows.map((t) => line(t, z.free_area.map((a) => a.by_migratetype?.[t] ?? 0))));
}

function pcp(z) {
  const cells = (z.pcp || []).map((p) => h('td', { text: `${p.count} / ${p.high} (batch ${p.batch})` }));
  return h('table', { class: 'grid' },
    h('tr', {}, h('th', { text: z.name }), (z.pcp || []).map((p) => h('th', { text: `cpu${p.cpu}` }))),
    h('tr', {}, h('td', { text: 'count / high' }), cells));
}

function hex(n) {
  return `0x${Number(n).toString(16)}`;
}
