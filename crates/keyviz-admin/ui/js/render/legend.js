// @ts-check
/** The colour legend: zero and no-data swatches, the palette bar, and numeric ticks. */

import { formatNumber, fractionOf, legendTicks, NO_DATA_INDEX, PALETTE_LABELS } from '../scales.js';
import { thinTicks } from '../viewstate.js';

/** Width of the palette bar, CSS px (`.legend-scale` in app.css). */
const BAR_PX = 280;
/** Advance of one tick-label character (10 px monospace-ish digits), px. */
const TICK_CHAR_PX = 6.5;

/**
 * @param {HTMLElement} el
 * @param {{ lut: Uint32Array, scale: import('../types.js').ScaleKind, palette: import('../types.js').PaletteName, max: number, saturated?: boolean, series: string }} o
 *   `max` is the value of the top colour; `saturated` when higher values are drawn with it
 *   too (brightness raised), so its tick reads "at least max".
 */
export function renderLegend(el, o) {
  const bar = document.createElement('canvas');
  bar.width = 254;
  bar.height = 1;
  bar.className = 'legend-bar';
  bar.setAttribute('role', 'img');
  bar.setAttribute('aria-label', `${PALETTE_LABELS[o.palette]} colour scale, ${o.scale}, from 1 to ${o.saturated ? 'at least ' : ''}${formatNumber(o.max)}`);
  const ctx = bar.getContext('2d');
  if (ctx) {
    const img = ctx.createImageData(254, 1);
    new Uint32Array(img.data.buffer).set(o.lut.subarray(1, 255));
    ctx.putImageData(img, 0, 0);
  }
  const swatch = (/** @type {number} */ index, /** @type {string} */ text, /** @type {string} */ cls) => {
    const s = document.createElement('span');
    s.className = `legend-swatch ${cls}`;
    const box = document.createElement('i');
    const v = o.lut[index];
    // The LUT is little-endian packed on every platform browsers ship on.
    box.style.background = `rgb(${v & 255}, ${(v >>> 8) & 255}, ${(v >>> 16) & 255})`;
    s.append(box, document.createTextNode(text));
    return s;
  };
  const scaleBox = document.createElement('div');
  scaleBox.className = 'legend-scale';
  const ticks = document.createElement('div');
  ticks.className = 'legend-ticks';
  const ticksAt = o.max > 0 ? [1, ...legendTicks(o.scale, o.max)] : [];
  const all = ticksAt.map((v, i) => ({ x: fractionOf(o.scale, o.max, v) * BAR_PX, text: `${o.saturated && i === ticksAt.length - 1 ? '≥' : ''}${formatNumber(v, true)}` }));
  // Labels closer than their widths would overlap ("100" over "104"): keep the max, drop the other.
  for (const { x, text } of thinTicks(all, (s) => s.length * TICK_CHAR_PX)) {
    const t = document.createElement('span');
    t.style.left = `${(x / BAR_PX) * 100}%`;
    t.textContent = text;
    ticks.append(t);
  }
  scaleBox.append(bar, ticks);
  const title = document.createElement('span');
  title.className = 'legend-title';
  title.textContent = `${o.series} per cell (${o.scale})`;
  const marks = document.createElement('span');
  marks.className = 'legend-marks';
  const hatch = document.createElement('i');
  hatch.className = 'mark-hatch';
  const leader = document.createElement('i');
  leader.className = 'mark-leader';
  const outage = document.createElement('i');
  outage.className = 'mark-outage';
  marks.append(hatch, document.createTextNode('conflict'), leader, document.createTextNode('leader change'), outage, document.createTextNode('node did not answer (under the time axis)'));
  el.replaceChildren(title, swatch(0, '0 (no traffic)', 'zero'), swatch(NO_DATA_INDEX, 'no data', 'nodata'), scaleBox, marks);
}

/**
 * A window in absolute time, unambiguous in a shared screenshot: UTC, to the second.
 * @param {number} from
 * @param {number} to
 */
export function absWindow(from, to) {
  const f = (/** @type {number} */ ms) => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
  return `${f(from)} – ${f(to)} UTC`;
}

/**
 * What a diff picture compares with what, in absolute time, and its scale: the text of the
 * diff legend, also drawn into the PNG export and the snapshot.
 * @param {import('../types.js').Comparison} cmp
 * @param {string} series
 * @param {string} modeLabel
 * @param {number} currentFrom start of the compared window, unix ms
 */
export function diffLegendText(cmp, series, modeLabel, currentFrom) {
  const cur = absWindow(currentFrom, currentFrom + cmp.current_span_ms);
  const base = absWindow(cmp.baseline_from_unix_ms, cmp.baseline_to_unix_ms);
  const scaled = Math.abs(cmp.scale - 1) > 1e-9 ? `, baseline scaled ×${cmp.scale.toPrecision(3)} to the current length` : '';
  return `Diff of ${series}: ${cur} compared with ${base} (${modeLabel}${scaled}). Each row: its key range's traffic now against the baseline (log2 ratio), drawn where the window has data.`;
}

/**
 * The diff legend: what is compared with what, the diverging bar with its ratio ticks, the
 * zero and no-data swatches, and totals.
 * @param {HTMLElement} el
 * @param {{ lut: Uint32Array, stops: number, cmp: import('../types.js').Comparison, series: string, modeLabel: string, currentFrom: number, more: number, less: number, uncovered: number, baselineDegraded: boolean }} o
 */
export function renderDiffLegend(el, o) {
  const bar = document.createElement('canvas');
  bar.width = 254;
  bar.height = 1;
  bar.className = 'legend-bar diff-bar';
  bar.setAttribute('role', 'img');
  bar.setAttribute('aria-label', `Diverging colour scale: blue less than the baseline, white no change, orange more; from ÷${2 ** o.stops} to ×${2 ** o.stops}`);
  const ctx = bar.getContext('2d');
  if (ctx) {
    const img = ctx.createImageData(254, 1);
    new Uint32Array(img.data.buffer).set(o.lut.subarray(1, 255));
    ctx.putImageData(img, 0, 0);
  }
  const scaleBox = document.createElement('div');
  scaleBox.className = 'legend-scale';
  const ticks = document.createElement('div');
  ticks.className = 'legend-ticks';
  for (const { x, text } of diffTicks(o.stops)) {
    const t = document.createElement('span');
    t.style.left = `${x * 100}%`;
    t.textContent = text;
    ticks.append(t);
  }
  scaleBox.append(bar, ticks);
  const title = document.createElement('span');
  title.className = 'legend-title diff-title';
  title.id = 'diff-legend-text';
  title.textContent = diffLegendText(o.cmp, o.series, o.modeLabel, o.currentFrom);
  const swatch = (/** @type {number} */ index, /** @type {string} */ text, /** @type {string} */ cls) => {
    const s = document.createElement('span');
    s.className = `legend-swatch ${cls}`;
    const box = document.createElement('i');
    const v = o.lut[index];
    box.style.background = `rgb(${v & 255}, ${(v >>> 8) & 255}, ${(v >>> 16) & 255})`;
    s.append(box, document.createTextNode(text));
    return s;
  };
  const totals = document.createElement('span');
  totals.className = 'legend-title';
  totals.id = 'diff-totals';
  const scaledBase = o.cmp.baseline_total * o.cmp.scale;
  totals.textContent = `Totals: ${formatNumber(o.cmp.current_total)} now vs ${formatNumber(Math.round(scaledBase))} baseline (scaled)`
    + `${scaledBase > 0 ? `, ${o.cmp.current_total >= scaledBase ? '×' : '÷'}${(o.cmp.current_total >= scaledBase ? o.cmp.current_total / scaledBase : scaledBase / Math.max(1e-9, o.cmp.current_total)).toFixed(2)}` : ''}`
    + ` · ${o.more} rows more, ${o.less} less`
    + `${o.cmp.baseline_unmatched > 0 ? ` · ${formatNumber(Math.round(o.cmp.baseline_unmatched))} baseline traffic in ranges not shown now` : ''}`
    + `${o.uncovered > 0 ? ` · ${o.uncovered} rows without a comparison (drawn as no data)` : ''}`
    + `${o.baselineDegraded ? ' · the baseline query was degraded (some nodes did not answer): its counts are low' : ''}`;
  el.replaceChildren(title, swatch(0, 'no traffic in either', 'zero'), swatch(NO_DATA_INDEX, 'no data', 'nodata'), scaleBox, swatch(1, 'less / gone', 'less'), swatch(254, 'more / new', 'more'), totals);
}

/**
 * Ticks of the diff bar at powers of two, as fractions 0..1 of its width: the ends (÷2^n,
 * which also stands for "gone", and ×2^n, also "new"), half way, and ×1 in the middle.
 * @param {number} stops
 */
export function diffTicks(stops) {
  const half = Math.round(stops / 2);
  const ps = [...new Set([-stops, -half, 0, half, stops])].filter((p) => p === 0 || Math.abs(p) >= 1);
  return ps.map((p) => ({ x: (p + stops) / (2 * stops), text: p === 0 ? '×1' : p < 0 ? `÷${2 ** -p}` : `×${2 ** p}` }));
}
