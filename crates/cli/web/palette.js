// Colours of the map: frame states (the frames' state plane codes, docs/SERVE_API.md),
// slab caches, zones and migrate types. Values are 0xAABBGGRR, as a Uint32Array over
// ImageData's bytes reads them on little-endian machines.

/** A colour as one ImageData pixel. */
export function rgba(r, g, b) {
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** A pixel as a CSS colour. */
export function css(c) {
  return `rgb(${c & 255},${(c >>> 8) & 255},${(c >>> 16) & 255})`;
}

/** What a state code is: a kind (for ranking and the legend), a label, a colour. */
export function stateEntry(code) {
  if (code >= 0x10 && code <= 0x1a) {
    const order = code - 0x10;
    // Free blocks: darker green for small orders, brighter for large ones.
    const k = order / 10;
    return { kind: 'free', label: `free (buddy, order ${order})`, order,
      colour: rgba(Math.round(18 + 20 * k), Math.round(50 + 80 * k), Math.round(32 + 34 * k)) };
  }
  const fixed = {
    0x00: ['hole', 'hole (no RAM)', rgba(0, 0, 0)],
    0x01: ['reserved', 'reserved by boot', rgba(110, 110, 120)],
    0x20: ['pcp', 'per-CPU list', rgba(120, 230, 200)],
    0x30: ['slab', 'slab (by cache)', rgba(74, 163, 255)],
    0x31: ['kmalloc_large', 'large kmalloc', rgba(240, 150, 40)],
    0x32: ['vmalloc', 'vmalloc page', rgba(220, 90, 220)],
    0x33: ['page_cache', 'page cache', rgba(170, 200, 80)],
    0x34: ['other', 'allocated (other)', rgba(235, 235, 235)],
    0x40: ['swiotlb', 'swiotlb pool', rgba(150, 110, 60)],
    0x41: ['dma', 'DMA-mapped', rgba(255, 90, 90)],
    0x42: ['page_table', 'page table', rgba(255, 240, 120)],
    0xff: ['unknown', 'unknown (corrupt?)', rgba(255, 0, 128)],
  }[code];
  if (!fixed) return { kind: 'other', label: `state 0x${code.toString(16)}`, colour: rgba(200, 200, 200) };
  return { kind: fixed[0], label: fixed[1], colour: fixed[2] };
}

/** The legend's rows, in the order people read them. */
export const LEGEND_CODES = [0x10, 0x14, 0x1a, 0x20, 0x30, 0x31, 0x32, 0x33, 0x34, 0x42, 0x41, 0x40, 0x01, 0x00, 0xff];

/** A slab cache's colour: blues and cyans, spread by its index. */
export function cacheColour(index) {
  const hue = 185 + ((index * 47) % 70); // 185..255: the slab family
  const light = 48 + ((index * 13) % 22);
  return hsl(hue, 80, light);
}

/** The colour of a migrate type (by its index in frames/meta `migratetypes`). */
export function migrateColour(index, names) {
  const name = names ? names[index] : '';
  const by = { Unmovable: rgba(255, 60, 60), Movable: rgba(60, 140, 255), Reclaimable: rgba(255, 200, 0),
    HighAtomic: rgba(255, 0, 255), CMA: rgba(0, 255, 255), Isolate: rgba(255, 255, 255) };
  return by[name] ?? rgba(90, 90, 90);
}

/** A zone's colour for the zone bands. */
export function zoneColour(name) {
  return { DMA: rgba(255, 120, 120), DMA32: rgba(120, 200, 255), Normal: rgba(140, 255, 140),
    HighMem: rgba(255, 200, 120), Movable: rgba(200, 140, 255) }[name] ?? rgba(200, 200, 200);
}

function hsl(h, s, l) {
  s /= 100; l /= 100;
  const f = (n) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return rgba(f(0), f(8), f(4));
}
