// @ts-check
/**
 * The heatmap's marginals: total load per time step above the plot (all displayed rows), and
 * each row's total over the window at its right, as plain bars sharing the plot's geometry.
 * Drawn on their own canvases, so they never repaint the heatmap.
 */

import { prepareCanvas } from './canvas.js';

/**
 * @param {HTMLCanvasElement} canvas
 * @param {number} cssWidth
 * @param {number} cssHeight
 */
function prepare(canvas, cssWidth, cssHeight) {
  const prepared = prepareCanvas(canvas, cssWidth, cssHeight);
  if (!prepared) return null;
  const { ctx, bw, bh } = prepared;
  ctx.fillStyle = getComputedStyle(canvas).color || '#2453c7';
  // Lighter than the heat so the eye stays on the heatmap.
  ctx.globalAlpha = 0.5;
  return { ctx, bw, bh };
}

/**
 * @param {Float64Array} values
 * @returns {number}
 */
function peak(values) {
  let m = 0;
  for (const v of values) if (v > m) m = v;
  return m;
}

/**
 * Bars of the per-step total along time.
 * @param {HTMLCanvasElement} canvas
 * @param {import('../view.js').View} view
 * @param {number} cssWidth
 * @param {number} cssHeight
 */
export function drawTimeMarginal(canvas, view, cssWidth, cssHeight) {
  const c = prepare(canvas, cssWidth, cssHeight);
  if (!c) return;
  const top = peak(view.slotTotals);
  canvas.dataset.max = String(top);
  if (!(top > 0)) return;
  const w = c.bw / view.slots;
  for (let s = 0; s < view.slots; s++) {
    const h = (view.slotTotals[s] / top) * c.bh;
    // Integer edges shared by neighbours: no overlap (which would darken) and no gap.
    const x0 = Math.floor(s * w);
    if (h > 0) c.ctx.fillRect(x0, c.bh - h, Math.max(1, Math.floor((s + 1) * w) - x0), h);
  }
}

/**
 * Bars of each displayed row's total, aligned with the rows.
 * @param {HTMLCanvasElement} canvas
 * @param {import('../view.js').View} view
 * @param {number} cssWidth
 * @param {number} cssHeight
 */
export function drawRowMarginal(canvas, view, cssWidth, cssHeight) {
  const c = prepare(canvas, cssWidth, cssHeight);
  if (!c) return;
  const n = view.rowIndex.length;
  const top = peak(view.totals);
  canvas.dataset.max = String(top);
  if (!(top > 0) || n === 0) return;
  const h = c.bh / n;
  for (let k = 0; k < n; k++) {
    const w = (view.totals[k] / top) * c.bw;
    const y0 = Math.floor(k * h);
    if (w > 0) c.ctx.fillRect(0, y0, w, Math.max(1, Math.floor((k + 1) * h) - y0));
  }
}
