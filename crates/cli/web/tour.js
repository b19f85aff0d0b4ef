// Tour: the ten claims of `kmemlab tour` as steps. Each runs its section on this session's
// machine (POST …/tour/{claim}), lights its evidence on the map and shows the verdict
// with what was measured.

import { h } from './dom.js';

const $ = (id) => document.getElementById(id);

/** The claims, in the tour's order. */
export const CLAIMS = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'Q1', 'Q2', 'Q3'];

/** The Tour view. */
export class TourView {
  constructor(app) {
    this.app = app;
    this.watches = [];
    this.results = {};
    this.evidence = {};
    $('tour-steps').replaceChildren(...CLAIMS.map((id) => this.step(id)));
    $('tour-all').addEventListener('click', () => this.runAll());
  }

  async refresh() {}

  step(id) {
    return h('li', { id: `tour-${id}`, 'data-claim': id },
      h('div', { class: 'row' },
        h('b', { text: `Claim ${id}` }),
        h('button', { type: 'button', class: 'run', onclick: () => this.run(id), text: `Run step ${id}` }),
        h('span', { class: 'verdict', 'aria-live': 'polite' }),
        h('button', { type: 'button', class: 'evidence', hidden: true, onclick: () => this.showEvidence(id), text: 'Show its evidence on the map' })),
      h('p', { class: 'claim' }),
      h('p', { class: 'measured dim' }),
      h('details', {}, h('summary', { text: 'what the tour printed' }), h('pre', { class: 'info text' })));
  }

  /** Run one claim's section; returns the ids of every claim the section decided. */
  async run(id) {
    const li = $(`tour-${id}`);
    const verdict = li.querySelector('.verdict');
    const button = li.querySelector('button.run');
    button.disabled = true;
    verdict.className = 'verdict';
    verdict.textContent = 'running…';
    try {
      const r = await this.app.session.post(`tour/${id}`);
      this.show(r.claim, r.text, null, r.highlight);
      // The section's experiment decides its other claims too (C and Q1 share one).
      for (const c of r.section_claims || []) {
        if (c.id !== id && $(`tour-${c.id}`)) this.show(c, r.text, id, r.highlight);
      }
      this.app.highlight(r.highlight || [], { show: false });
      return (r.section_claims || [r.claim]).map((c) => c.id);
    } catch (e) {
      verdict.textContent = `error: ${e.message}`;
      verdict.className = 'verdict failed';
      li.dataset.verdict = 'error';
      return [id];
    } finally {
      button.disabled = false;
    }
  }

  /** Show a claim's verdict and figures (`via`: the claim whose run decided it). */
  show(c, text, via, highlight) {
    const li = $(`tour-${c.id}`);
    this.evidence[c.id] = highlight || [];
    li.querySelector('.evidence').hidden = !(highlight && highlight.length);
    const verdict = li.querySelector('.verdict');
    this.results[c.id] = c.verdict;
    verdict.textContent = c.verdict;
    verdict.className = `verdict ${c.verdict === 'n/a' ? 'na' : c.verdict}`;
    li.dataset.verdict = c.verdict;
    li.querySelector('.claim').textContent = via ? `${c.claim} (decided by the experiment of step ${via})` : c.claim;
    li.querySelector('.measured').textContent = c.reason ? `measured: ${c.measured} (${c.reason})` : `measured: ${c.measured}`;
    li.querySelector('.text').textContent = text;
  }

  /** Light again the frames a claim's experiment measured (its `pfns` lists, as runs). */
  showEvidence(id) {
    const runs = this.evidence[id] || [];
    this.app.highlight(runs, { show: false });
    this.app.map.fitWhole();
    this.app.map.draw();
    const what = [...new Set(runs.map((r) => r.what))].join(', ');
    this.app.status(`claim ${id}: ${runs.length} run${runs.length === 1 ? '' : 's'} of frames lit (${what})`);
  }

  /** Every step in order; a claim an earlier step's experiment already decided is not run
   *  again (its section would repeat the same experiment on the aged machine). */
  async runAll() {
    const decided = new Set();
    for (const id of CLAIMS) {
      if (decided.has(id)) continue;
      for (const d of await this.run(id)) decided.add(d);
    }
  }
}
