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
