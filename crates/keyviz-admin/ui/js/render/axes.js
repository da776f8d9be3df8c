// @ts-check
/**
 * Axis labels as positioned DOM text (so they stay sharp and selectable). Keys are user data:
 * every label goes through textContent.
 */

import { chooseLabelRows, elideCommonPrefix, fitText, rowLabel, rowTitle } from '../labels.js';
import { formatDuration, formatTick, timeTicks } from '../scales.js';

export { rowLabel };

/** Distance between label centres on the key axis, px (11 px text plus air). */
export const LABEL_GAP_PX = 14;
/** Font of the key labels; must match `.key-label` in app.css so measuring is exact. */
const LABEL_FONT = '11px ui-monospace, monospace';

/** @type {CanvasRenderingContext2D|null} */
let measureCtx = null;
/** @param {string} s */
function measureLabel(s) {
  if (!measureCtx) {
    measureCtx = document.createElement('canvas').getContext('2d');
    if (measureCtx) measureCtx.font = LABEL_FONT;
  }
  return measureCtx ? measureCtx.measureText(s).width : s.length * 7;
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
  // The step is the resolution the server answered at (a coarser history tier for old windows).
  caption.textContent = `local time · resolution ${formatDuration(view.stepMs)} per column${slot}`;
  caption.title = 'Each column is one step of the history the server read; older windows may come from a coarser tier.';
  frag.append(caption);
  el.replaceChildren(frag);
}

/**
 * Labels the rows of the key axis. Each label is the row's first real key (see `rowLabel`),
 * with the prefix it shares with the label above elided (`user:0042`, then `…0097`); the full
 * key and the exact [start, end) range are in its hover text. When not every row fits, the
 * busiest rows are labelled first (`chooseLabelRows`). Every label is measured and shortened to
 * the axis width, and kept inside the axis box vertically, so none is clipped; a tick marks the
 * row's exact position when the label had to move off it (at the box's edge, or to make room
 * for a busy neighbour).
 * @param {HTMLElement} el the strip left of the plot
 * @param {import('../view.js').View} view
 * @param {number} heightPx
 */
export function renderKeyAxis(el, view, heightPx) {
  const n = view.rowIndex.length;
  const frag = document.createDocumentFragment();
  if (n > 0) {
    const rowPx = heightPx / n;
    // 6 px right padding (as in .key-label) and 4 px on the left.
    const maxPx = Math.max(24, (el.clientWidth || 170) - 10);
    const shown = chooseLabelRows(n, rowPx, LABEL_GAP_PX, view.totals);
    /** @type {string|null} */
    let prev = null;
    for (const { k, y } of shown) {
      const row = view.matrix.rows[view.rowIndex[k]];
      const full = rowLabel(row);
      const text = fitText(elideCommonPrefix(prev, full), maxPx, measureLabel);
      prev = full;
      const label = document.createElement('span');
      label.className = 'key-label';
      label.dataset.row = String(k);
      label.style.top = `${y}px`;
      label.textContent = text;
      label.title = rowTitle(row);
      frag.append(label);
      const exact = (k + 0.5) * rowPx;
      if (Math.abs(exact - y) >= 1) {
        const tick = document.createElement('span');
        tick.className = 'key-tick';
        tick.style.top = `${exact}px`;
        frag.append(tick);
      }
    }
  }
  el.replaceChildren(frag);
}
