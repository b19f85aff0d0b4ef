// The frames encoding of `GET …/frames` (docs/SERVE_API.md): a 32-byte header `KMLF`,
// plane ids padded to 8 bytes, then one byte per page for each plane. Decoded into
// typed-array views over the response's bytes (no copy).

const PLANE_NAMES = { 1: 'states', 2: 'cache', 3: 'migrate' };

/** The planes of a frames response: {first, count, generation, states, cache?, migrate?}. */
export function decodeFrames(bytes) {
  if (bytes.length < 32) throw new Error(`frames: ${bytes.length} bytes is shorter than the header`);
  const magic = String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]);
  if (magic !== 'KMLF') throw new Error(`frames: bad magic ${JSON.stringify(magic)}`);
  if (bytes[4] !== 1) throw new Error(`frames: version ${bytes[4]}, this page reads version 1`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const planes = bytes[5];
  const first = Number(view.getBigUint64(8, true));
  const count = Number(view.getBigUint64(16, true));
  const generation = Number(view.getBigUint64(24, true));
  const dataStart = 32 + Math.ceil(planes / 8) * 8;
  if (bytes.length < dataStart + planes * count) {
    throw new Error(`frames: ${bytes.length} bytes, the header promises ${dataStart + planes * count}`);
  }
  const out = { first, count, generation };
  for (let i = 0; i < planes; i++) {
    const name = PLANE_NAMES[bytes[32 + i]] ?? `plane${bytes[32 + i]}`;
    out[name] = bytes.subarray(dataStart + i * count, dataStart + (i + 1) * count);
  }
  return out;
}
