// @ts-check
/** Export of the current view: PNG of the plot (heat + hatching + caption) and CSV of the cells. */

import { decodeKey, formatNumber, formatTick, fractionOf, keyLabel, legendTicks, NO_DATA_INDEX, timeTicks, toHex } from './scales.js';
import { diffTicks } from './render/legend.js';
import { LABEL_GAP_PX, rowLabel } from './render/axes.js';
import { chooseLabelRows, elideCommonPrefix, fitText } from './labels.js';

/**
 * @param {Blob} blob
 * @param {string} name
 */
export function download(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/** @param {number} ms */
export const stamp = (ms) => new Date(ms).toISOString().replace(/[:.]/g, '-');

/**
 * What is drawn into an exported image besides the heat: a title, meta lines (series, window,
 * key range, scale) and the legend (plain colour scale or diff scale).
 * @typedef {object} ImageLabels
 * @property {string} title
 * @property {string[]} lines
 * @property {{ kind: 'plain', lut: Uint32Array, scale: import('./types.js').ScaleKind, max: number, saturated: boolean, text: string }
 *   | { kind: 'diff', lut: Uint32Array, stops: number, text: string }} legend
 */

/**
 * Greedy word wrap of `text` to `width` px as measured by `measure`.
 * @param {string} text
 * @param {number} width
 * @param {(s: string) => number} measure
 */
export function wrapText(text, width, measure) {
  /** @type {string[]} */
  const out = [];
  let line = '';
  for (const word of text.split(' ')) {
    const next = line ? `${line} ${word}` : word;
    if (line && measure(next) > width) {
      out.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line) out.push(line);
  return out;
}

/**
 * Composes what is on screen into one canvas at device resolution: the title and meta lines
 * on top, the key labels on the left, the heatmap with its conflict hatching and leader
 * marks, the time ticks underneath, and the legend (bar, ticks, swatches, text) at the
 * bottom, so the image can be read on its own in an incident document.
 * @param {HTMLCanvasElement} heat
 * @param {HTMLCanvasElement} hatch
 * @param {import('./view.js').View} view
 * @param {ImageLabels} labels
 * @param {boolean} dark
 * @returns {HTMLCanvasElement|null}
 */
export function composeImage(heat, hatch, view, labels, dark) {
  const scale = heat.width / Math.max(1, parseFloat(heat.style.width) || heat.width);
  const px = (/** @type {number} */ v) => Math.round(v * scale);
  const left = px(170);
  const width = left + heat.width + px(12);
  const measureCtx = document.createElement('canvas').getContext('2d');
  if (!measureCtx) return null;
  measureCtx.font = `${px(12)}px system-ui, sans-serif`;
  const meta = labels.lines.flatMap((l) => wrapText(l, width - px(12), (s) => measureCtx.measureText(s).width));
  const legendText = wrapText(labels.legend.text, width - px(12), (s) => measureCtx.measureText(s).width);
  const lineH = px(16);
  const top = px(28) + meta.length * lineH + px(6);
  const axisH = px(26);
  const legendH = px(48) + legendText.length * lineH;
  const out = document.createElement('canvas');
  out.width = width;
  out.height = top + heat.height + axisH + legendH;
  const ctx = out.getContext('2d');
  if (!ctx) return null;
  ctx.fillStyle = dark ? '#181b21' : '#ffffff';
  ctx.fillRect(0, 0, out.width, out.height);
  const ink = dark ? '#e7e9ee' : '#16181d';
  const muted = dark ? '#9aa3b2' : '#5b6270';
  ctx.fillStyle = ink;
  ctx.font = `${px(14)}px system-ui, sans-serif`;
  ctx.textBaseline = 'middle';
  ctx.fillText(labels.title, px(6), px(14));
  ctx.font = `${px(12)}px system-ui, sans-serif`;
  meta.forEach((l, i) => ctx.fillText(l, px(6), px(28) + i * lineH + lineH / 2));
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(heat, left, top);
  ctx.drawImage(hatch, left, top);
  // Key labels, thinned like the on-screen axis.
  const n = view.rowIndex.length;
  ctx.fillStyle = muted;
  ctx.font = `${px(11)}px ui-monospace, monospace`;
  ctx.textAlign = 'right';
  if (n > 0) {
    // The same choice and elision as the on-screen axis (busiest rows first), measured in the
    // export's own font.
    const rowPx = heat.height / n;
    /** @type {string|null} */
    let prev = null;
    for (const { k, y } of chooseLabelRows(n, rowPx, LABEL_GAP_PX * scale, view.totals)) {
      const full = rowLabel(view.matrix.rows[view.rowIndex[k]]);
      const text = fitText(elideCommonPrefix(prev, full), left - px(10), (s) => ctx.measureText(s).width);
      prev = full;
      ctx.fillText(text, left - px(6), top + y);
    }
  }
  // Time ticks.
  const { interval, ticks } = timeTicks(view.from, view.to, heat.width / scale, view.stepMs);
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  ctx.strokeStyle = muted;
  for (const t of ticks) {
    const x = left + ((t - view.from) / (view.to - view.from)) * heat.width;
    ctx.beginPath();
    ctx.moveTo(x, top + heat.height);
    ctx.lineTo(x, top + heat.height + px(4));
    ctx.stroke();
    ctx.fillText(formatTick(t, interval), x, top + heat.height + px(6));
  }
  // Legend: swatches, the colour bar with its ticks, then its text.
  const ly = top + heat.height + axisH + px(6);
  const lut = labels.legend.lut;
  const rgb = (/** @type {number} */ v) => `rgb(${v & 255}, ${(v >>> 8) & 255}, ${(v >>> 16) & 255})`;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  ctx.font = `${px(11)}px system-ui, sans-serif`;
  let x = px(6);
  const diff = labels.legend.kind === 'diff';
  for (const [index, text] of /** @type {[number, string][]} */ ([[0, diff ? 'no traffic in either' : '0 (no traffic)'], [NO_DATA_INDEX, 'no data']])) {
    ctx.fillStyle = rgb(lut[index]);
    ctx.fillRect(x, ly, px(14), px(12));
    ctx.strokeStyle = muted;
    ctx.strokeRect(x, ly, px(14), px(12));
    ctx.fillStyle = ink;
    ctx.fillText(text, x + px(18), ly + px(6));
    x += px(24) + ctx.measureText(text).width;
  }
  const barX = x + px(8);
  const barW = px(280);
  const strip = document.createElement('canvas');
  strip.width = 254;
  strip.height = 1;
  const sctx = strip.getContext('2d');
  if (sctx) {
    const img = sctx.createImageData(254, 1);
    new Uint32Array(img.data.buffer).set(lut.subarray(1, 255));
    sctx.putImageData(img, 0, 0);
    ctx.drawImage(strip, 0, 0, 254, 1, barX, ly, barW, px(12));
  }
  ctx.strokeStyle = muted;
  ctx.strokeRect(barX, ly, barW, px(12));
  const legend = labels.legend;
  const tickAt = legend.kind === 'diff'
    ? diffTicks(legend.stops)
    : (legend.max > 0 ? [1, ...legendTicks(legend.scale, legend.max)] : []).map((v, i, all) => ({ x: fractionOf(legend.scale, legend.max, v), text: `${legend.saturated && i === all.length - 1 ? '≥' : ''}${formatNumber(v, true)}` }));
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  ctx.fillStyle = muted;
  let lastRight = -Infinity;
  for (const t of tickAt) {
    const tx = barX + t.x * barW;
    const w = ctx.measureText(t.text).width;
    if (tx - w / 2 < lastRight + px(4) && t !== tickAt[tickAt.length - 1]) continue;
    ctx.fillText(t.text, tx, ly + px(14));
    lastRight = tx + w / 2;
  }
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  ctx.fillStyle = ink;
  ctx.font = `${px(12)}px system-ui, sans-serif`;
  legendText.forEach((l, i) => ctx.fillText(l, px(6), ly + px(36) + i * lineH + lineH / 2));
  return out;
}

/**
 * Exports what is on screen as a PNG with its labels and legend (see composeImage).
 * @param {HTMLCanvasElement} heat
 * @param {HTMLCanvasElement} hatch
 * @param {import('./view.js').View} view
 * @param {ImageLabels} labels
 * @param {boolean} dark
 */
export function exportPng(heat, hatch, view, labels, dark) {
  const out = composeImage(heat, hatch, view, labels, dark);
  out?.toBlob((b) => b && download(b, `keyviz-${view.matrix.series}-${stamp(view.from)}.png`), 'image/png');
}

/**
 * One CSV field. Keys are user data: a field a spreadsheet would run as a formula (leading
 * =, +, -, @, tab or CR) gets a leading apostrophe, and quotes/commas/newlines are quoted.
 * @param {string} s
 */
export function csvCell(s) {
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/**
 * One line per displayed row: identity and keys (label and hex), then one value per column.
 * @param {import('./view.js').View} view
 * @returns {string}
 */
export function toCsv(view) {
  const m = view.matrix;
  /** @type {number[]} */
  const cols = [];
  for (let j = 0; j < m.column_unix_ms.length; j++) if (view.colSlot[j] >= 0) cols.push(j);
  const head = ['bucket_id', 'label', 'start_hex', 'end_hex', 'aggregate', 'route_count', 'total']
    .concat(cols.map((j) => new Date(m.column_unix_ms[j]).toISOString()));
  const lines = [head.map(csvCell).join(',')];
  view.rowIndex.forEach((ri, k) => {
    const r = m.rows[ri];
    const start = decodeKey(r.start);
    const end = decodeKey(r.end);
    const cells = [
      r.bucket_id,
      rowLabel(r),
      start ? toHex(start) : '',
      end ? toHex(end) : keyLabel(null, 'end'),
      String(r.aggregate),
      String(r.route_count),
      String(view.totals[k]),
      ...cols.map((j) => String(r.values[j])),
    ];
    lines.push(cells.map(csvCell).join(','));
  });
  return `${lines.join('\n')}\n`;
}

/** @param {import('./view.js').View} view */
export function exportCsv(view) {
  const blob = new Blob([toCsv(view)], { type: 'text/csv' });
  download(blob, `keyviz-${view.matrix.series}-${stamp(view.from)}.csv`);
}
