// The map's legend: a swatch and a name for each frame state.

import { LEGEND_CODES, css, stateEntry } from './palette.js';

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
