// @ts-check
/**
 * Key-axis labels (pure, no DOM): which text names a row, which rows get a label when not all
 * fit, how much of a key to show next to its neighbour, and how to fit it into a width. The
 * renderer (render/axes.js) only positions what these functions decide, so the rules can be
 * unit-checked in Node.
 */

import { decodeKey, keyLabel } from './scales.js';

/** Longest label text, in characters, before fitting it to the axis width. */
const MAX_LABEL_CHARS = 64;

/**
 * The text naming a row: its first observed key (`first_key`, a key somebody actually wrote or
 * read) when the server sent one, else the server's preview of the start key, else the decoded
 * start key. A computed sub-range boundary (`start`) is only the fallback: it may be bytes
 * nobody wrote.
 * @param {import('./types.js').MatrixRow} row
 * @param {number} [max] longest text in characters
 */
export function rowLabel(row, max = MAX_LABEL_CHARS) {
  const first = decodeKey(row.first_key ?? null);
  if (first && first.length > 0) return keyLabel(first, 'start', max);
  if (row.preview) return row.preview;
  return keyLabel(decodeKey(row.start), 'start', max);
}

/** Characters that end a key component: a cut right after one reads naturally. */
const SEPARATORS = new Set([':', '/', '.', '_', '-', '|', '#', '@', ',', ';', '=', ' ', '+']);

/** @param {string} c @returns {'digit'|'letter'|'other'} */
const charClass = (c) => (/[0-9]/.test(c) ? 'digit' : /[A-Za-z]/.test(c) ? 'letter' : 'other');

/**
 * The part of `text` that distinguishes it from `prev` (the label drawn above it): the common
 * prefix is replaced by "…", cut back to a component boundary (after a separator, or where
 * letters turn into digits) so the shown part starts at a whole component — `user:0042` then
 * `…0097`, not `…97`. Nothing is elided when fewer than 4 characters would go, when the texts
 * share no boundary, or when `text` would become empty. Hex labels (`0x…`) keep their `0x` and
 * cut at whole bytes.
 * @param {string|null} prev full text of the previous label (null for the first one)
 * @param {string} text full text of this label
 */
export function elideCommonPrefix(prev, text) {
  if (!prev) return text;
  let c = 0;
  while (c < prev.length && c < text.length && prev[c] === text[c]) c++;
  if (c >= text.length) return text;
  const hex = text.startsWith('0x') && prev.startsWith('0x');
  if (hex) {
    const cut = 2 + Math.floor((c - 2) / 2) * 2;
    return cut >= 6 ? `0x…${text.slice(cut)}` : text;
  }
  // Largest boundary j <= c: after a separator, or a change of character class.
  let j = c;
  while (j > 0) {
    const before = text[j - 1];
    if (SEPARATORS.has(before) || charClass(before) !== charClass(text[j])) break;
    j--;
  }
  if (j < 4) return text;
  return `…${text.slice(j)}`;
}

/** How many of the busiest rows may have their label moved off their row to make room. */
const NUDGED_ROWS = 12;

/**
 * Which rows get a label, and where: rows are `rowPx` tall, labels need `gapPx` between their
 * centres and stay inside [gapPx/2, n·rowPx − gapPx/2] (see `labelCentre`). When every row fits,
 * every row is labelled at its centre. Otherwise the busiest rows (by `totals`) are placed first,
 * so a hot row is never left unlabelled because a quiet neighbour took its place; when one of
 * the `NUDGED_ROWS` busiest collides with a placed label it moves up or down by at most `gapPx`
 * into the nearest free place (two adjacent hot rows both get a label; the axis draws a tick at
 * the row). Then every `stride`-th row fills the gaps, unmoved. Labels keep the rows' order.
 * @param {number} n rows
 * @param {number} rowPx
 * @param {number} gapPx
 * @param {ArrayLike<number>} totals per row, same order
 * @returns {{ k: number, y: number }[]} labelled rows and their centres, ascending
 */
export function chooseLabelRows(n, rowPx, gapPx, totals) {
  if (n <= 0) return [];
  const height = n * rowPx;
  if (rowPx >= gapPx) return Array.from({ length: n }, (_, k) => ({ k, y: (k + 0.5) * rowPx }));
  /** @type {number[]} */
  const order = [];
  const busy = [];
  for (let k = 0; k < n; k++) if (totals[k] > 0) busy.push(k);
  busy.sort((a, b) => totals[b] - totals[a] || a - b);
  order.push(...busy);
  const stride = Math.max(1, Math.ceil(gapPx / rowPx));
  for (let k = 0; k < n; k += stride) order.push(k);
  /** @type {{ k: number, y: number }[]} placed labels, ascending by y */
  const placed = [];
  const lo = gapPx / 2;
  const hi = height - gapPx / 2;
  /**
   * Insertion index of row k's label at y (ties by row, so clamped labels keep the rows' order),
   * and whether it keeps gapPx from both neighbours there.
   */
  const probe = (/** @type {number} */ y, /** @type {number} */ k) => {
    let a = 0;
    let b = placed.length;
    while (a < b) {
      const mid = (a + b) >> 1;
      if (placed[mid].y < y || (placed[mid].y === y && placed[mid].k < k)) a = mid + 1;
      else b = mid;
    }
    const free = (a === 0 || y - placed[a - 1].y >= gapPx - 1e-9) && (a === placed.length || placed[a].y - y >= gapPx - 1e-9);
    return { at: a, free };
  };
  const seen = new Uint8Array(n);
  let nudgeable = NUDGED_ROWS;
  for (const k of order) {
    if (seen[k]) continue;
    seen[k] = 1;
    const want = labelCentre(k, rowPx, height, gapPx);
    let y = want;
    let p = probe(y, k);
    if (!p.free && nudgeable > 0 && totals[k] > 0) {
      // The nearest free centres are right below the label above or right above the one below.
      const { at } = p;
      const candidates = [];
      if (at > 0) candidates.push(placed[at - 1].y + gapPx);
      if (at < placed.length) candidates.push(placed[at].y - gapPx);
      candidates.sort((a, b) => Math.abs(a - want) - Math.abs(b - want));
      for (const c of candidates) {
        if (Math.abs(c - want) > gapPx || c < lo - 1e-9 || c > hi + 1e-9) continue;
        const q = probe(c, k);
        // Stay between the same neighbours, so labels keep the rows' order.
        if (q.free && q.at === at) {
          y = c;
          p = q;
          break;
        }
      }
    }
    if (!p.free) continue;
    if (totals[k] > 0 && nudgeable > 0) nudgeable--;
    placed.splice(p.at, 0, { k, y });
  }
  return placed;
}

/**
 * Where a row's label is drawn: the row's centre, clamped so a label `labelPx` tall stays
 * inside the axis box (the top label of a dense axis would otherwise stick out above it and be
 * clipped — "hot" read as "not").
 * @param {number} k
 * @param {number} rowPx
 * @param {number} heightPx
 * @param {number} labelPx
 */
export function labelCentre(k, rowPx, heightPx, labelPx) {
  const half = labelPx / 2;
  const y = (k + 0.5) * rowPx;
  return Math.max(half, Math.min(heightPx - half, y));
}

/**
 * Shortens `text` with a trailing "…" until `measure` says it fits in `maxPx` (at least "…").
 * @param {string} text
 * @param {number} maxPx
 * @param {(s: string) => number} measure width of a string in px
 */
export function fitText(text, maxPx, measure) {
  if (measure(text) <= maxPx) return text;
  const chars = [...text];
  let lo = 0;
  let hi = chars.length - 1;
  // Longest prefix whose "prefix…" fits.
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (measure(`${chars.slice(0, mid).join('')}…`) <= maxPx) lo = mid;
    else hi = mid - 1;
  }
  return `${chars.slice(0, lo).join('')}…`;
}

/**
 * The hover text of a row label: the full first key, the exact [start, end) range and the
 * bucket, so an elided or shortened label can always be read in full.
 * @param {import('./types.js').MatrixRow} row
 */
export function rowTitle(row) {
  const first = decodeKey(row.first_key ?? null);
  const range = `[${keyLabel(decodeKey(row.start), 'start', 256)}, ${keyLabel(decodeKey(row.end), 'end', 256)})`;
  const lines = [];
  if (first && first.length > 0) lines.push(`first key: ${keyLabel(first, 'start', 256)}`);
  const last = decodeKey(row.last_key ?? null);
  if (last && last.length > 0 && (!first || keyLabel(last, 'start', 256) !== keyLabel(first, 'start', 256))) lines.push(`last key: ${keyLabel(last, 'start', 256)}`);
  lines.push(`range: ${range}`);
  lines.push(`bucket: ${row.bucket_id}`);
  return lines.join('\n');
}
