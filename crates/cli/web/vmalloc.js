// vmalloc: the range as a line of areas (busy, lazily freed, guard pages); an area's
// train of pages, each car joined by a line to its frame on the map, beside a kmalloc
// block of the same size; an address's page-table walk and the TLBs holding it
// (GET …/vmalloc, …/vmalloc/{addr}, …/walk/{addr}).

import { fmt, h, size } from './dom.js';

const $ = (id) => document.getElementById(id);
const MAX_CARS = 64;
const KMALLOC_MAX = 4 << 20; // KMALLOC_MAX_SIZE on x86_64 (order 10 pages), Linux 6.6

/** The vmalloc view. */
export class VmallocView {
  constructor(app) {
    this.app = app;
    this.watches = ['vmalloc', 'frames'];
    this.train = null;
    $('walk-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.walk($('walk-addr').value.trim());
    });
    app.map.canvas.addEventListener('mapdrawn', () => this.drawLines());
    window.addEventListener('resize', () => this.drawLines());
    document.querySelector('#view-vmalloc').addEventListener('scroll', () => this.drawLines());
  }

  async refresh() {
    const v = await this.app.session.json('vmalloc');
    const line = [];
    for (const a of v.areas) {
      line.push(h('button', {
        type: 'button', class: `area ${a.state}`, 'data-start': a.start, 'data-runs': a.phys_runs,
        style: `width:${Math.min(160, 18 + 8 * Math.log2(1 + a.size / 4096))}px`,
        title: `${a.kind} ${a.start}–${a.end} ${size(a.size)} ${a.state}${a.caller ? `, ${a.caller}` : ''}`,
        'aria-label': `${a.state} ${a.kind} area at ${a.start}, ${size(a.size)}, ${a.phys_runs} physical runs`,
        onclick: () => this.showTrain(a.start),
        text: size(a.size).replace(' ', ''),
      }));
      if (a.guard > 0) line.push(h('span', { class: 'area guard', title: `guard page ${size(a.guard)}` }));
    }
    $('vmap-line').replaceChildren(
      h('span', { class: 'dim', text: `${v.start} ` }),
      ...(line.length ? line : [h('span', { class: 'dim', text: '(no areas yet: try vmalloc 64K GFP_KERNEL in the console)' })]),
      h('span', { class: 'dim', text: ` ${v.end}` }));
    if (this.train) {
      const still = v.areas.some((a) => a.start === this.train.area.start && a.state === 'busy');
      if (still) await this.showTrain(this.train.area.start, { keepView: true });
      else this.clearTrain();
    }
  }

  shown() { this.drawLines(); }

  clearTrain() {
    this.train = null;
    $('train').replaceChildren();
    this.drawLines();
  }

  /** The train of an area: a car per page, lines to the frames, the runs they make. */
  async showTrain(addr, { keepView = false } = {}) {
    const t = await this.app.session.json(`vmalloc/${addr}`);
    this.train = t;
    const runs = runsOf(t.pages.map((p) => p.pfn));
    const cars = t.pages.slice(0, MAX_CARS).map((p) => h('button', {
      type: 'button', class: 'car', 'data-pfn': p.pfn, title: `${p.virt} → pfn 0x${p.pfn.toString(16)}`,
      'aria-label': `page ${p.index} at ${p.virt}, frame ${p.pfn}; show its page-table walk`,
      onclick: () => { $('walk-addr').value = p.virt; this.walk(p.virt); },
      text: String(p.index),
    }));
    const pages = t.pages.length;
    // The area's size counts its guard page: the kmalloc of the same size is of the pages.
    const bytes = pages * 4096;
    const order = Math.ceil(Math.log2(Math.max(1, pages)));
    const kmallocText = bytes <= KMALLOC_MAX
      ? `kmalloc(${size(bytes)}) would be one block of 2^${order} = ${fmt(1 << order)} contiguous frames: 1 physical run`
      : `kmalloc cannot serve ${size(bytes)} (over KMALLOC_MAX_SIZE, 4 MiB)`;
    const kcars = bytes <= KMALLOC_MAX
      ? Array.from({ length: Math.min(pages, MAX_CARS) }, (_, i) => h('span', { class: 'car kmalloc', text: String(i) }))
      : [];
    // The cars first: the lines to the map leave from their tops and cross nothing else.
    $('train').replaceChildren(h('div', {},
      h('div', { class: 'train', 'aria-label': 'virtual pages of the area, in order' }, cars),
      h('h3', { text: `${t.area.kind} area ${t.area.start}–${t.area.end}, ${size(t.area.size)} with its guard page${t.area.caller ? `, from ${t.area.caller}` : ''}` }),
      h('p', { id: 'train-runs', 'data-runs': runs.length, 'data-pages': pages,
        text: `${fmt(pages)} pages in ${runs.length} physical run${runs.length === 1 ? '' : 's'} (the server counts ${t.runs.length}); guard ${size(t.area.guard)}` }),
      pages > MAX_CARS ? h('p', { class: 'dim', text: `first ${MAX_CARS} of ${fmt(pages)} pages shown; every frame is lit on the map` }) : null,
      h('p', { class: 'dim', text: `runs: ${runs.slice(0, 16).map((r) => (r.pages > 1 ? `0x${r.pfn.toString(16)}+${r.pages}` : `0x${r.pfn.toString(16)}`)).join(', ')}${runs.length > 16 ? ', …' : ''}` }),
      h('h3', { text: 'for contrast' }),
      h('p', { text: kmallocText }),
      h('div', { class: 'train' }, kcars),
      bytes <= KMALLOC_MAX ? h('button', { type: 'button', id: 'train-kmalloc',
        onclick: () => this.app.views.console.run(`kmalloc ${bytes} GFP_KERNEL`),
        text: 'allocate a kmalloc block of this size (in the console)' }) : null));
    if (!keepView) { this.app.map.fitWhole(); }
    this.app.highlight(t.pages.map((p) => ({ pfn: p.pfn, pages: 1 })), { show: false });
  }

  /** The lines from each car to its frame's cell on the map. */
  drawLines() {
    const svg = $('overlay');
    if (!this.train || this.app.current !== 'vmalloc') { svg.replaceChildren(); return; }
    const ns = 'http://www.w3.org/2000/svg';
    const shapes = [];
    for (const car of document.querySelectorAll('#train .car[data-pfn]')) {
      const r = car.getBoundingClientRect();
      const cell = this.app.map.clientRect(Number(car.dataset.pfn));
      if (!cell || r.width === 0) continue;
      const line = document.createElementNS(ns, 'line');
      line.setAttribute('x1', r.left + r.width / 2);
      line.setAttribute('y1', r.top);
      line.setAttribute('x2', cell.x + cell.size / 2);
      line.setAttribute('y2', cell.y + cell.size / 2);
      shapes.push(line);
      const box = document.createElementNS(ns, 'rect');
      const s = Math.max(4, cell.size);
      box.setAttribute('x', cell.x + cell.size / 2 - s / 2);
      box.setAttribute('y', cell.y + cell.size / 2 - s / 2);
      box.setAttribute('width', s);
      box.setAttribute('height', s);
      shapes.push(box);
    }
    svg.replaceChildren(...shapes);
  }

  /** The page-table walk of an address, level by level, and the TLBs holding it. */
  async walk(addr) {
    const out = $('walk');
    if (!addr) return;
    try {
      const w = await this.app.session.json(`walk/${encodeURIComponent(addr)}`);
      const levels = w.steps.map((s, depth) => h('div', { class: 'lvl', style: `--d:${depth}`, 'data-level': s.level },
        h('b', { text: `${s.level}` }),
        ` table ${s.table} [${s.index}] = ${s.entry}`,
        s.flags?.length ? ` ${s.flags.join('|')}` : '',
        s.next_pfn !== undefined && s.next_pfn !== null ? ` → pfn 0x${s.next_pfn.toString(16)}` : ''));
      const result = w.result
        ? `→ phys ${w.result.phys} (${size(w.result.page_size)} page, ${w.result.writable ? 'writable' : 'read-only'})`
        : 'the walk ends at a missing or bad entry';
      const tlb = (w.tlb || []).filter((t) => t.cached)
        .map((t) => `cpu${t.cpu}${t.level ? ` (${t.level}${t.frame ? ` → ${t.frame}` : ''})` : ''}`);
      out.replaceChildren(h('div', { class: 'walk', 'data-virt': w.virt },
        h('p', { text: `walk of ${w.virt}` }), levels,
        h('p', { text: result }),
        h('p', { text: `in the TLB of: ${tlb.length ? tlb.join(', ') : 'no CPU'}` }),
        h('pre', { class: 'info', text: w.text })));
      if (w.result) {
        const pfn = w.result.pfn ?? Number(BigInt(w.result.phys) / 4096n);
        this.app.highlight([{ pfn, pages: 1 }], { show: false });
      }
    } catch (e) {
      out.replaceChildren(h('p', { class: 'err', text: `walk ${addr}: ${e.message}` }));
    }
  }
}

/** Physically contiguous runs of frames, in the order of the pages. */
export function runsOf(pfns) {
  const runs = [];
  for (const p of pfns) {
    const last = runs[runs.length - 1];
    if (last && last.pfn + last.pages === p) last.pages++;
    else runs.push({ pfn: p, pages: 1 });
  }
  return runs;
}
