// @ts-check
/** Export of the current view: PNG of the plot (heat + hatching + caption) and CSV of the cells. */

import { decodeKey, keyLabel, toHex } from './scales.js';
import { rowLabel } from './render/axes.js';

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
 * @param {HTMLCanvasElement} heat
 * @param {HTMLCanvasElement} hatch
 * @param {string} caption
 * @param {number} fromMs
 */
export function exportPng(heat, hatch, caption, fromMs) {
  const pad = 28;
  const out = document.createElement('canvas');
  out.width = heat.width;
  out.height = heat.height + pad;
  const ctx = out.getContext('2d');
  if (!ctx) return;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.fillStyle = '#16181d';
  ctx.font = '14px system-ui, sans-serif';
  ctx.fillText(caption, 6, 19);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(heat, 0, pad);
  ctx.drawImage(hatch, 0, pad);
  out.toBlob((b) => b && download(b, `keyviz-${stamp(fromMs)}.png`), 'image/png');
}

/** @param {string} s */
const csvCell = (s) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

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
