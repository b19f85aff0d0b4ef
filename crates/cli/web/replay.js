// Replay: load a trace (an upload or a sample the server offers), then play / pause /
// step / scrub; the map follows each seek (through the change events) and a chart shows
// memory over the whole trace; the perf-kmem report is one click away
// (POST …/replay, …/replay/seek, GET …/replay/series, …/replay/report).

import { samples } from './api.js';
import { fmt, h, size } from './dom.js';

const $ = (id) => document.getElementById(id);

// The replay report's samples (kmemlab_sim::trace): bytes of slab, free memory and the
// largest free block.
const SERIES = [
  ['slab_bytes', 'slab memory', '#4aa3ff'],
  ['free_bytes', 'free memory', '#7ee08a'],
  ['largest_free_bytes', 'largest free block', '#ffd35a'],
];

/** The Replay view. */
export class ReplayView {
  constructor(app) {
    this.app = app;
    this.watches = [];
    this.events = 0;
    this.position = 0;
    this.series = [];
    this.playing = false;
    this.seeking = null;
    this.wanted = null;
    $('replay-form').addEventListener('submit', (e) => { e.preventDefault(); this.load(); });
    $('replay-play').addEventListener('click', () => this.togglePlay());
    $('replay-step').addEventListener('click', () => this.seek(this.position + 1));
    const scrub = $('replay-scrub');
    scrub.addEventListener('input', () => { $('replay-pos').textContent = this.label(Number(scrub.value)); this.drawChart(Number(scrub.value)); });
    scrub.addEventListener('change', () => this.seek(Number(scrub.value)));
    $('replay-report').addEventListener('click', () => this.report());
    samples().then((list) => {
      $('replay-sample').append(...list.map((s) => h('option', { value: s.name, text: `${s.name} (${size(s.bytes)})` })));
    }).catch(() => {});
  }

  async refresh() {}

  label(n) { return `${fmt(n)} / ${fmt(this.events)}`; }

  /** Load the chosen file, or else the chosen sample. */
  async load() {
    const file = $('replay-file').files[0];
    const sample = $('replay-sample').value;
    if (!file && !sample) { this.app.status('choose a trace file or a sample first', true); return; }
    this.pause();
    $('replay-text').textContent = `loading ${file ? file.name : sample}… (replayed once to index it)`;
    try {
      const r = file
        ? await this.app.session.upload('replay?lenient=1', file)
        : await this.app.session.post('replay', { sample, lenient: true });
      this.events = r.events;
      this.position = r.position;
      const s = await this.app.session.json('replay/series');
      this.series = s.samples;
      $('replay-text').textContent = `${file ? file.name : sample}: ${fmt(r.events)} events from ${fmt(r.lines)} lines, ${fmt(r.series_points)} samples`;
      for (const id of ['replay-play', 'replay-step', 'replay-scrub', 'replay-report']) $(id).disabled = false;
      const scrub = $('replay-scrub');
      scrub.max = String(r.events);
      scrub.value = String(r.position);
      this.showPosition();
      document.body.dataset.replayEvents = String(r.events);
    } catch (e) {
      $('replay-text').textContent = `replay: ${e.message}`;
    }
  }

  /** Move the session's machine to the state after `n` events (one seek at a time; the
   *  latest wish wins). */
  async seek(n) {
    this.wanted = Math.max(0, Math.min(this.events, n));
    if (this.seeking) return this.seeking;
    this.seeking = (async () => {
      while (this.wanted !== null) {
        const target = this.wanted;
        this.wanted = null;
        try {
          const r = await this.app.session.post('replay/seek', { event: target });
          this.position = r.position;
          this.showPosition();
        } catch (e) {
          this.app.status(`seek: ${e.message}`, true);
          this.pause();
        }
      }
      this.seeking = null;
    })();
    return this.seeking;
  }

  showPosition() {
    $('replay-scrub').value = String(this.position);
    $('replay-pos').textContent = this.label(this.position);
    document.body.dataset.replayPosition = String(this.position);
    this.drawChart(this.position);
  }

  togglePlay() {
    if (this.playing) this.pause();
    else this.play();
  }

  pause() {
    this.playing = false;
    $('replay-play').textContent = 'Play';
  }

  /** Seek forward in fiftieths of the trace until the end or a pause. */
  async play() {
    this.playing = true;
    $('replay-play').textContent = 'Pause';
    const stride = Math.max(1, Math.ceil(this.events / 50));
    if (this.position >= this.events) await this.seek(0);
    while (this.playing && this.position < this.events) {
      await this.seek(this.position + stride);
      await new Promise((r) => setTimeout(r, 100));
    }
    this.pause();
  }

  async report() {
    try {
      $('replay-text').textContent = await this.app.session.text('replay/report');
      $('replay-text').focus();
    } catch (e) {
      $('replay-text').textContent = `report: ${e.message}`;
    }
  }

  /** Memory over time: each series scaled to its own maximum; a cursor at `at`. */
  drawChart(at) {
    const c = $('replay-chart');
    const g = c.getContext('2d');
    g.fillStyle = '#05070a';
    g.fillRect(0, 0, c.width, c.height);
    if (!this.series.length || !this.events) return;
    const x = (e) => (e / this.events) * (c.width - 2) + 1;
    SERIES.forEach(([key, label, colour], i) => {
      const max = Math.max(1, ...this.series.map((s) => s[key] ?? 0));
      g.strokeStyle = colour;
      g.lineWidth = 1.5;
      g.beginPath();
      this.series.forEach((s, j) => {
        const y = c.height - 4 - ((s[key] ?? 0) / max) * (c.height - 24);
        if (j === 0) g.moveTo(x(s.event), y); else g.lineTo(x(s.event), y);
      });
      g.stroke();
      g.fillStyle = colour;
      g.font = '11px sans-serif';
      g.fillText(`${label} (max ${size(max)})`, 6 + i * 190, 12);
    });
    g.strokeStyle = '#ffffff';
    g.beginPath();
    g.moveTo(x(at), 16);
    g.lineTo(x(at), c.height);
    g.stroke();
  }
}
