// @ts-check
/**
 * Diff mode: the matrix API's comparison with a baseline window (docs/ADMIN.md, "Comparing
 * two windows") drawn cell by cell with a diverging palette.
 *
 * The server gives, per row, the row's traffic in the current window and the baseline
 * traffic of the same key range scaled to the current window's length, aligned by key range.
 * Each row is coloured by that ratio (white: as in the baseline, orange: more, blue: less)
 * across the columns where the window has data. Colouring single cells against the row's
 * baseline average was tried and rejected: any time structure (a sweep, a periodic scan) then
 * shows as change even when the two windows are alike, which misleads. The tooltip adds the
 * cell's own count next to the row's baseline average per cell, as numbers.
 */

import { NO_DATA_INDEX, packRgba } from './scales.js';

/** Highest palette index a change maps to. */
const TOP = 254;
/** Widest scale, in powers of two either side of "no change" (×64 / ÷64). */
export const MAX_STOPS = 6;
export const DAY_MS = 86_400_000;

/**
 * Diverging palette stops [t, r, g, b], t = 0 (far less) .. 0.5 (no change) .. 1 (far more):
 * ColorBrewer's PuOr-style blue–white–orange, readable with the common colour-vision
 * deficiencies (blue and orange stay apart for protanopes and deuteranopes) and monotone in
 * lightness from the centre out, so greyscale still shows how far a cell is from its baseline.
 */
const STOPS = [
  [0.0, 33, 102, 172],
  [0.17, 67, 147, 195],
  [0.33, 146, 197, 222],
  [0.5, 247, 247, 247],
  [0.67, 253, 204, 138],
  [0.83, 241, 137, 44],
  [1.0, 179, 73, 6],
];

/** @param {number} t 0..1 */
export function diffColour(t) {
  const x = Math.min(1, Math.max(0, t));
  for (let i = 1; i < STOPS.length; i++) {
    const [t1, r1, g1, b1] = STOPS[i];
    const [t0, r0, g0, b0] = STOPS[i - 1];
    if (x <= t1) {
      const f = (x - t0) / (t1 - t0);
      return [Math.round(r0 + (r1 - r0) * f), Math.round(g0 + (g1 - g0) * f), Math.round(b0 + (b1 - b0) * f)];
    }
  }
  return STOPS[STOPS.length - 1].slice(1);
}

/**
 * No data in diff mode: a mid grey, since the heat palette's pale no-data colour would read as
 * the diverging scale's white ("no change").
 */
export const DIFF_NO_DATA = [150, 150, 150];

/**
 * The diff colour table: 0 = no traffic in either window (the zero grey), 1..254 the
 * diverging scale, 255 no data (or a row the comparison does not cover).
 * @param {number[]} zeroRgb
 * @param {number[]} [noDataRgb]
 */
export function buildDiffLut(zeroRgb, noDataRgb = DIFF_NO_DATA) {
  const lut = new Uint32Array(256);
  lut[0] = packRgba(zeroRgb[0], zeroRgb[1], zeroRgb[2]);
  for (let i = 1; i <= TOP; i++) {
    const [r, g, b] = diffColour((i - 1) / (TOP - 1));
    lut[i] = packRgba(r, g, b);
  }
  lut[NO_DATA_INDEX] = packRgba(noDataRgb[0], noDataRgb[1], noDataRgb[2]);
  return lut;
}

/**
 * The baseline window the state asks for, given the current window `w`; null when diff mode
 * is off (or a custom baseline is not set).
 * @param {import('./types.js').ViewState} s
 * @param {{ from: number, to: number }} w
 * @returns {{ from: number, to: number }|null}
 */
export function baselineOf(s, w) {
  const width = Math.max(1, Math.round(w.to - w.from));
  const from = Math.floor(w.from);
  if (s.diff === 'prev') return { from: from - width, to: from };
  if (s.diff === 'day') return { from: from - DAY_MS, to: from - DAY_MS + width };
  if (s.diff === 'custom' && s.bto > s.bfrom && s.bfrom > 0) return { from: s.bfrom, to: s.bto };
  return null;
}

/** Human text of a diff mode. @param {import('./types.js').DiffMode} d */
export function diffModeLabel(d) {
  return d === 'prev' ? 'the previous window of the same width'
    : d === 'day' ? 'the same window 1 day earlier'
    : d === 'custom' ? 'a custom baseline window' : 'nothing';
}

/**
 * Per displayed row, the server's change for that row (matched by bucket id), or null where
 * the comparison has no entry (a companion series' layout row).
 * @param {import('./view.js').View} view
 * @param {import('./types.js').Comparison} cmp
 * @returns {(import('./types.js').RowChange|null)[]}
 */
export function rowChanges(view, cmp) {
  /** @type {Map<string, import('./types.js').RowChange>} */
  const byId = new Map();
  for (const r of cmp.rows) byId.set(r.bucket_id, r);
  return view.rowIndex.map((ri) => byId.get(view.matrix.rows[ri].bucket_id) ?? null);
}

/**
 * One cell against its row's baseline average over the cell's span (tooltip numbers only;
 * the picture is coloured by row). `ratio` is null when the expected value is 0.
 * @param {number} v
 * @param {number} spanMs
 * @param {import('./types.js').RowChange} rc
 * @param {number} currentSpanMs
 */
export function cellChange(v, spanMs, rc, currentSpanMs) {
  const expected = currentSpanMs > 0 ? (rc.baseline * spanMs) / currentSpanMs : 0;
  return { expected, delta: v - expected, ratio: expected > 0 ? v / expected : null };
}

/**
 * Scale of the picture: ±`stops` powers of two, the smallest integer (1..MAX_STOPS) covering
 * the largest finite |log2 ratio| of the rows, so one view's extremes use the palette's ends.
 * @param {number[]} logRatios
 */
export function scaleStops(logRatios) {
  let m = 0;
  for (const r of logRatios) if (Number.isFinite(r) && Math.abs(r) > m) m = Math.abs(r);
  return Math.min(MAX_STOPS, Math.max(1, Math.ceil(m - 1e-9)));
}

/**
 * Palette index of a change: 0 when both are zero, the far ends for "new" (baseline 0) and
 * "gone" (current 0), else log2(ratio) clamped to ±stops.
 * @param {number} v
 * @param {number} expected
 * @param {number} stops
 */
export function diffIndex(v, expected, stops) {
  if (!(v > 0) && !(expected > 0)) return 0;
  if (!(expected > 0)) return TOP;
  if (!(v > 0)) return 1;
  const l = Math.min(stops, Math.max(-stops, Math.log2(v / expected)));
  return 1 + Math.round(((l + stops) / (2 * stops)) * (TOP - 1));
}

/**
 * How many matrix columns fall in each X slot of the view (0 = no data in that slot).
 * @param {import('./view.js').View} view
 */
export function slotColumns(view) {
  const cols = new Uint32Array(view.slots);
  for (let j = 0; j < view.colSlot.length; j++) {
    const s = view.colSlot[j];
    if (s >= 0 && s < view.slots) cols[s]++;
  }
  return cols;
}

/**
 * Palette indices of the whole diff picture (row-major, view.slots per row) and its scale:
 * each row at its server ratio, no data where the slot has no column or the row has no
 * comparison. `more` / `less` count rows above / below ×1 by at least one palette step.
 * @param {import('./view.js').View} view
 * @param {import('./types.js').Comparison} cmp
 */
export function diffPicture(view, cmp) {
  const changes = rowChanges(view, cmp);
  const cols = slotColumns(view);
  const w = view.slots;
  const logs = changes.map((rc) => (rc && rc.ratio !== null && rc.ratio > 0 ? Math.log2(rc.ratio) : NaN));
  const stops = scaleStops(logs);
  const idx = new Uint8Array(w * changes.length);
  let more = 0;
  let less = 0;
  for (let k = 0; k < changes.length; k++) {
    const rc = changes[k];
    const i = rc ? diffIndex(rc.current, rc.baseline, stops) : NO_DATA_INDEX;
    if (i > 0 && i < 127) less++;
    else if (i > 128 && i <= TOP) more++;
    for (let s = 0; s < w; s++) idx[k * w + s] = cols[s] > 0 ? i : NO_DATA_INDEX;
  }
  return { idx, stops, changes, more, less, uncovered: changes.filter((c) => c === null).length };
}

/**
 * A ratio as text: "×2.5", "÷3.1", "new" (baseline 0 and traffic now), "—" (none in both).
 * @param {number|null} ratio
 * @param {number} current
 */
export function formatRatio(ratio, current) {
  if (ratio === null) return current > 0 ? 'new (no baseline traffic)' : '— (no traffic in either window)';
  if (ratio === 0) return 'gone (×0)';
  if (ratio >= 1) return `×${ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(2)}`;
  const inv = 1 / ratio;
  return `÷${inv >= 10 ? inv.toFixed(0) : inv.toFixed(2)} (×${ratio.toFixed(ratio < 0.1 ? 3 : 2)})`;
}

/** @param {number} d */
export function formatDelta(d) {
  const r = Math.round(d * 10) / 10;
  return `${r > 0 ? '+' : r < 0 ? '−' : '±'}${Math.abs(r).toLocaleString('en-US', { maximumFractionDigits: 1 })}`;
}
