// CPUs: context, interrupt and preempt state, TLB counters, shootdowns and IPIs
// (GET …/cpus).

import { fmt, h } from './dom.js';

const $ = (id) => document.getElementById(id);

/** The CPUs view. */
export class CpusView {
  constructor(app) {
    this.app = app;
    this.watches = ['cpus'];
    this.last = null;
  }

  async refresh() {
    const c = await this.app.session.json('cpus');
    const before = this.last;
    this.last = c;
    const delta = (now, key) => {
      const was = before?.flush?.[key];
      return was !== undefined && now > was ? ` (+${now - was})` : '';
    };
    $('cpus').replaceChildren(
      h('p', { class: 'row' },
        h('b', { text: `shootdowns ${fmt(c.flush.shootdowns)}${delta(c.flush.shootdowns, 'shootdowns')}` }),
        h('b', { text: `IPIs ${fmt(c.flush.ipis)}${delta(c.flush.ipis, 'ipis')}` }),
        h('span', { text: `full flushes ${fmt(c.flush.full_flushes)} · pages invalidated ${fmt(c.flush.pages_invalidated)} · page faults ${fmt(c.page_faults)}` })),
      ...c.cpus.map((cpu) => card(cpu, c.current)));
  }
}

function card(cpu, current) {
  const t = cpu.tlb;
  const lookups = t.l1_hits + t.l2_hits + t.misses;
  const hitPct = lookups ? Math.round((100 * (t.l1_hits + t.l2_hits)) / lookups) : 0;
  return h('div', { class: 'cpu', 'data-cpu': cpu.cpu },
    h('div', { class: 'row' },
      h('b', { text: `CPU ${cpu.cpu}${cpu.cpu === current ? ' (commands run here)' : ''}` }),
      h('span', { text: `context ${cpu.context}` }),
      h('span', { text: cpu.irqs_off ? 'irqs off' : 'irqs on' }),
      h('span', { text: `preempt depth ${cpu.preempt_depth}` })),
    h('div', { text: `TLB: L1 hits ${fmt(t.l1_hits)} · L2 hits ${fmt(t.l2_hits)} · misses ${fmt(t.misses)} · hit rate ${hitPct}% · flushed ${fmt(t.entries_flushed)} · full flushes ${fmt(t.full_flushes)} · invlpg ${fmt(t.single_page_flushes)}` }),
    h('div', { class: 'tlbbar', title: `hit rate ${hitPct}%` }, h('i', { style: `width:${hitPct}%` })),
    occupancy(t.occupancy));
}

/** TLB occupancy: entries in use of each level's capacity ([used, capacity] pairs). */
function occupancy(occ) {
  if (!occ) return null;
  const names = { l1_4k: 'L1 4K', l1_large: 'L1 2M/4M', l1_1g: 'L1 1G', l2: 'L2 (STLB)' };
  return h('div', { class: 'occ' }, Object.entries(occ).map(([k, [used, cap]]) => h('span', { class: 'occ-item', title: `${used} of ${cap} entries` },
    `${names[k] ?? k} ${used}/${cap}`,
    h('span', { class: 'tlbbar occbar' }, h('i', { style: `width:${cap ? (100 * used) / cap : 0}%` })))));
}
