// Small DOM helpers shared by the views.

/** An element with attributes (`class`, `text`, `on…` handlers, others as attributes) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'style') el.style.cssText = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined && c !== false) el.append(c);
  }
  return el;
}

/** A number with thousands separators. */
export function fmt(n) {
  return Number(n).toLocaleString('en');
}

/** Bytes as people read them (4 KiB, 1.5 MiB). */
export function size(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(bytes);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

const KERNEL_ADDRESS = /0xffff[0-9a-f]{12}\b/g;

/** Text with every kernel virtual address made a button that shows its page-table walk
 *  (`onAddress(addr)`). */
export function linkAddresses(text, onAddress) {
  const parts = [];
  let last = 0;
  for (const m of text.matchAll(KERNEL_ADDRESS)) {
    parts.push(text.slice(last, m.index));
    const addr = m[0];
    parts.push(h('button', { type: 'button', class: 'addr', title: `page-table walk of ${addr}`, onclick: () => onAddress(addr), text: addr }));
    last = m.index + addr.length;
  }
  parts.push(text.slice(last));
  return parts;
}
