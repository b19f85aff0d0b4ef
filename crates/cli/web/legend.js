// The map's legend: a swatch and a name for each frame state.

import { LEGEND_CODES, css, migrateColour, stateEntry } from './palette.js';

/** Fill `el` with the legend of the frame states. */
export function renderLegend(el) {
  el.replaceChildren(...LEGEND_CODES.map((code) => {
    const e = stateEntry(code);
    const item = document.createElement('span');
    const sw = document.createElement('i');
    sw.style.background = css(e.colour);
    item.append(sw, e.label);
    return item;
  }));
}

/** The migrate types' tints of the pageblock overlay (empty when the overlay is off). */
export function renderMigrateLegend(el, names, on) {
  el.replaceChildren(...(on ? names : []).map((name, i) => {
    const item = document.createElement('span');
    const sw = document.createElement('i');
    sw.style.background = css(migrateColour(i, names));
    item.append(sw, `pageblock ${name}`);
    return item;
  }));
}
