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
    $('tour-steps').replaceChildren(...CLAIMS.map((id) => this.step(id)));
    $('tour-all').addEventListener('click', () => this.runAll());
  }

  async refresh() {}

  step(id) {
    return h('li', { id: `tour-${id}`, 'data-claim': id },
      h('div', { class: 'row' },
        h('b', { text: `Claim ${id}` }),
        h('button', { type: 'button', class: 'run', onclick: () => this.run(id), text: `Run step ${id}` }),
        h('span', { class: 'verdict', 'aria-live': 'polite' })),
      h('p', { class: 'claim' }),
      h('p', { class: 'measured dim' }),
      h('details', {}, h('summary', { text: 'what the tour printed' }), h('pre', { class: 'info text' })));
  }

  /** Run one claim's section; returns its verdict. */
  async run(id) {
    const li = $(`tour-${id}`);
    const verdict = li.querySelector('.verdict');
    const button = li.querySelector('button.run');
    button.disabled = true;
    verdict.className = 'verdict';
    verdict.textContent = 'running…';
    try {
      const r = await this.app.session.post(`tour/${id}`);
      const c = r.claim;
      this.results[id] = c.verdict;
      verdict.textContent = c.verdict;
      verdict.className = `verdict ${c.verdict === 'n/a' ? 'na' : c.verdict}`;
      li.dataset.verdict = c.verdict;
      li.querySelector('.claim').textContent = c.claim;
      li.querySelector('.measured').textContent = c.reason ? `measured: ${c.measured} (${c.reason})` : `measured: ${c.measured}`;
      li.querySelector('.text').textContent = r.text;
      this.app.highlight(r.highlight || [], { show: false });
      return c.verdict;
    } catch (e) {
      verdict.textContent = `error: ${e.message}`;
      verdict.className = 'verdict failed';
      li.dataset.verdict = 'error';
      return 'error';
    } finally {
      button.disabled = false;
    }
  }

  async runAll() {
    for (const id of CLAIMS) await this.run(id);
  }
}
