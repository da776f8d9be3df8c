// @ts-check
/** Export of the current view: PNG of the plot (heat + hatching + caption) and CSV of the cells. */

import { decodeKey, formatTick, keyLabel, timeTicks, toHex } from './scales.js';
import { LABEL_GAP_PX, rowLabel } from './render/axes.js';
import { chooseLabelRows, elideCommonPrefix, fitText } from './labels.js';

/**
 * @param {Blob} blob
 * @param {string} name
 */
function download(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/** @param {number} ms */
const stamp = (ms) => new Date(ms).toISOString().replace(/[:.]/g, '-');

/**
 * Exports what is on screen as a PNG at device resolution: a caption, the key labels on the
 * left, the heatmap with its conflict hatching, and the time ticks underneath.
 * @param {HTMLCanvasElement} heat
 * @param {HTMLCanvasElement} hatch
 * @param {import('./view.js').View} view
 * @param {string} caption
 * @param {boolean} dark
 */
export function exportPng(heat, hatch, view, caption, dark) {
  const scale = heat.width / Math.max(1, parseFloat(heat.style.width) || heat.width);
  const left = Math.round(170 * scale);
  const top = Math.round(28 * scale);
  const bottom = Math.round(26 * scale);
  const out = document.createElement('canvas');
  out.width = left + heat.width + Math.round(12 * scale);
  out.height = top + heat.height + bottom;
  const ctx = out.getContext('2d');
  if (!ctx) return;
  ctx.fillStyle = dark ? '#181b21' : '#ffffff';
  ctx.fillRect(0, 0, out.width, out.height);
  const ink = dark ? '#e7e9ee' : '#16181d';
  const muted = dark ? '#9aa3b2' : '#5b6270';
  ctx.fillStyle = ink;
  ctx.font = `${Math.round(14 * scale)}px system-ui, sans-serif`;
  ctx.textBaseline = 'middle';
  ctx.fillText(caption, Math.round(6 * scale), top / 2);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(heat, left, top);
  ctx.drawImage(hatch, left, top);
  // Key labels, thinned like the on-screen axis.
  const n = view.rowIndex.length;
  ctx.fillStyle = muted;
  ctx.font = `${Math.round(11 * scale)}px ui-monospace, monospace`;
  ctx.textAlign = 'right';
  if (n > 0) {
    // The same choice and elision as the on-screen axis (busiest rows first), measured in the
    // export's own font.
    const rowPx = heat.height / n;
    /** @type {string|null} */
    let prev = null;
    for (const { k, y } of chooseLabelRows(n, rowPx, LABEL_GAP_PX * scale, view.totals)) {
      const full = rowLabel(view.matrix.rows[view.rowIndex[k]]);
      const text = fitText(elideCommonPrefix(prev, full), left - Math.round(10 * scale), (s) => ctx.measureText(s).width);
      prev = full;
      ctx.fillText(text, left - Math.round(6 * scale), top + y);
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
    ctx.lineTo(x, top + heat.height + Math.round(4 * scale));
    ctx.stroke();
    ctx.fillText(formatTick(t, interval), x, top + heat.height + Math.round(6 * scale));
  }
  out.toBlob((b) => b && download(b, `keyviz-${view.matrix.series}-${stamp(view.from)}.png`), 'image/png');
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
