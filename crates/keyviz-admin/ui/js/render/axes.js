// @ts-check
/**
 * Axis labels as positioned DOM text (so they stay sharp and selectable). Keys are user data:
 * every label goes through textContent.
 */

import { decodeKey, formatDuration, formatTick, keyLabel, timeTicks } from '../scales.js';

/**
 * Readable label of a row: the server's preview when present, else the decoded start key.
 * @param {import('../types.js').MatrixRow} row
 */
export function rowLabel(row) {
  if (row.preview) return row.preview;
  return keyLabel(decodeKey(row.start), 'start');
}

/**
 * @param {HTMLElement} el the axis strip under the plot
 * @param {import('../view.js').View} view
 * @param {number} widthPx
 * @param {{ from: number, to: number }} shown the window currently drawn (differs during a wheel preview)
 */
export function renderTimeAxis(el, view, widthPx, shown = view) {
  const { interval, ticks } = timeTicks(shown.from, shown.to, widthPx, view.stepMs);
  const frag = document.createDocumentFragment();
  for (const t of ticks) {
    const tick = document.createElement('span');
    tick.className = 'tick';
    tick.style.left = `${((t - shown.from) / (shown.to - shown.from)) * widthPx}px`;
    tick.textContent = formatTick(t, interval);
    tick.title = new Date(t).toISOString();
    frag.append(tick);
  }
  const caption = document.createElement('span');
  caption.className = 'axis-caption';
  const slot = view.slotMs !== view.stepMs ? `, ${formatDuration(view.slotMs)} per pixel column` : '';
  caption.textContent = `local time · step ${formatDuration(view.stepMs)}${slot}`;
  frag.append(caption);
  el.replaceChildren(frag);
}

/**
 * Labels a subset of rows so that labels are at least 14 px apart.
 * @param {HTMLElement} el the strip left of the plot
 * @param {import('../view.js').View} view
 * @param {number} heightPx
 */
export function renderKeyAxis(el, view, heightPx) {
  const n = view.rowIndex.length;
  const frag = document.createDocumentFragment();
  if (n > 0) {
    const rowPx = heightPx / n;
    const stride = Math.max(1, Math.ceil(14 / rowPx));
    for (let k = 0; k < n; k += stride) {
      const row = view.matrix.rows[view.rowIndex[k]];
      const label = document.createElement('span');
      label.className = 'key-label';
      label.style.top = `${k * rowPx + Math.min(rowPx, 14) / 2}px`;
      label.textContent = rowLabel(row);
      label.title = `${row.bucket_id}: ${rowLabel(row)}`;
      frag.append(label);
    }
  }
  el.replaceChildren(frag);
}
