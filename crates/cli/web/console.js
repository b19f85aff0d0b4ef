// Console: any shell line (the language of `kmemlab shell`), printed as the shell prints
// it; history on ↑/↓, Tab completes command names; the frames a line touched are lit on
// the map; kernel lines go to the dmesg pane (POST …/commands?touched=1, events).

import { h, linkAddresses } from './dom.js';

const $ = (id) => document.getElementById(id);
const MAX_OUTPUT_NODES = 2000;

/** The text the shell prints for one outcome (`Outcome::print_text` in shell.rs). */
export function shellText(o) {
  const lines = o.kernel.map((l) => `  ${l}`);
  if (o.oops_notice) lines.push(o.oops_notice);
  // For a failed line, `message` is the shell's failure() text: its error, or the oops.
  const failure = o.failed ? o.message : null;
  if (failure !== null && o.expected_failure) lines.push(`failed as expected: ${failure}`);
  else if (failure !== null) lines.push(`error: line ${o.line}: ${o.command}: ${failure}`);
  else if (o.expected_failure) lines.push(`error: line ${o.line}: ${o.command}: expected to fail, but it succeeded`);
  else {
    const prefix = o.name ? `${o.name} = ` : '';
    if (typeof o.result === 'string' && /^0x[0-9a-f]+$/.test(o.result)) lines.push(`${prefix}${o.result}  (${o.message})`);
    else if (typeof o.result === 'number') lines.push(`${prefix}0x${o.result.toString(16)}  (${o.message})`);
    else if (Array.isArray(o.result)) {
      // A bulk call's addresses: one per line, under the names they were kept as.
      lines.push(`${prefix}${o.message}`);
      o.result.forEach((a, i) => lines.push(o.name ? `  ${o.name}${i} = ${a}` : `  [${i}] ${a}`));
    }
    else if (o.message) lines.push(`${prefix}${o.message}`);
  }
  return lines;
}

/** The Console view. */
export class ConsoleView {
  constructor(app, commands) {
    this.app = app;
    this.watches = [];
    this.names = commands.map((c) => c.name).sort();
    this.history = [];
    this.cursor = 0;
    this.seenDmesg = 0;
    const input = $('console-in');
    $('console-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const line = input.value;
      input.value = '';
      this.run(line);
    });
    input.addEventListener('keydown', (e) => this.key(e));
    this.dmesg();
    this.updatePrompt();
  }

  async refresh() {}

  /** Run a line in the session, print it as the shell does, light what it touched. */
  async run(line) {
    if (line.trim() && this.history[this.history.length - 1] !== line) this.history.push(line);
    this.cursor = this.history.length;
    this.print(`${$('console-prompt').textContent} ${line}`, 'cmd');
    let answer;
    try {
      answer = await this.app.session.post('commands?touched=1', { line });
    } catch (e) {
      this.print(`error: ${e.message}`, 'err');
      return null;
    }
    const o = answer?.outcome;
    if (!o) return answer;
    for (const text of shellText(o)) {
      this.print(text, text.startsWith('  ') ? 'kern' : text.startsWith('error') ? 'err' : '');
    }
    if (o.kernel.length) this.dmesg();
    this.updatePrompt();
    if (answer.touched?.length) {
      this.app.highlight(answer.touched, { show: false });
      const caches = answer.touched.map((t) => /^slab (\S+)/.exec(t.what)?.[1]).filter(Boolean);
      this.app.views.slabs.markTouched(caches);
    }
    document.body.dataset.lastCommand = String(o.line);
    return answer;
  }

  async updatePrompt() {
    try {
      const s = await this.app.session.json('');
      $('console-prompt').textContent = s.prompt.trim();
    } catch (_) { /* keep the old prompt */ }
  }

  print(text, cls) {
    const out = $('console-out');
    out.append(h('div', { class: cls || null }, linkAddresses(text, (a) => this.app.walk(a))));
    while (out.childNodes.length > MAX_OUTPUT_NODES) out.firstChild.remove();
    out.scrollTop = out.scrollHeight;
  }

  /** New kernel lines exist: fetch them from the session's console (one fetch at a time,
   *  so that every line shows once, in order). */
  dmesg() {
    if (this.dmesgBusy) { this.dmesgAgain = true; return this.dmesgBusy; }
    this.dmesgBusy = (async () => {
      do {
        this.dmesgAgain = false;
        await this.loadDmesg();
      } while (this.dmesgAgain);
      this.dmesgBusy = null;
    })();
    return this.dmesgBusy;
  }

  async loadDmesg() {
    try {
      const d = await this.app.session.json(`dmesg?since=${this.seenDmesg}`);
      const pane = $('dmesg');
      pane.append(d.lines.map((l) => `${l.text}\n`).join(''));
      this.seenDmesg = d.next;
      pane.scrollTop = pane.scrollHeight;
    } catch (_) { /* tried again at the next event */ }
  }

  key(e) {
    const input = e.target;
    if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
      e.preventDefault();
      this.cursor = Math.max(0, Math.min(this.history.length, this.cursor + (e.key === 'ArrowUp' ? -1 : 1)));
      input.value = this.history[this.cursor] ?? '';
    } else if (e.key === 'Tab' && !e.shiftKey && input.value.trim()) {
      const done = this.complete(input.value);
      if (done !== null) { e.preventDefault(); input.value = done; }
    }
  }

  /** Tab completion of the command name being typed (after `name =` and `!`). */
  complete(value) {
    const m = /^(\s*!?\s*(?:[A-Za-z_]\w*\s*=\s*)?)(\S*)$/.exec(value);
    if (!m) return null;
    const [, head, word] = m;
    const hits = this.names.filter((n) => n.startsWith(word));
    if (hits.length === 0) return null;
    if (hits.length === 1) return `${head}${hits[0]} `;
    let common = hits[0];
    for (const n of hits) while (!n.startsWith(common)) common = common.slice(0, -1);
    if (common.length > word.length) return head + common;
    this.print(hits.join('  '), 'dim');
    return value;
  }
}
