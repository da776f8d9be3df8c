// @ts-check
/**
 * Draws the heatmap: one pixel per (slot, row) in an offscreen buffer filled through ImageData,
 * then drawImage'd onto the visible canvas with smoothing off, so cells stay crisp at any size
 * and device pixel ratio. Buffers are allocated with headroom and reused while the view fits:
 * an auto-refresh or live tick that adds a column or a row repaints pixels but allocates no
 * canvas.
 */

import { makeIndexScale, makeIndexTable, NO_DATA_INDEX } from '../scales.js';
import { prepareCanvas } from './canvas.js';

/** Counters the page exposes for tests and the perf page. */
export const renderStats = { bufferAllocations: 0, canvasResizes: 0, lastPaintMs: 0, lastDrawMs: 0 };

export class HeatmapRenderer {
  /** @param {HTMLCanvasElement} canvas the visible canvas */
  constructor(canvas) {
    this.canvas = canvas;
    /** @type {HTMLCanvasElement} */
    this.buffer = document.createElement('canvas');
    /** @type {ImageData|null} */
    this.image = null;
    /** @type {Float64Array} one row of per-slot maxima, for gaps and coarsened slots */
    this.rowMax = new Float64Array(0);
    this.width = 0;
    this.height = 0;
    /** allocated buffer size (>= width x height; the rest of each row is unused) */
    this.capWidth = 0;
    this.capHeight = 0;
  }

  /**
   * Makes sure the offscreen buffers are width x height, allocating only on a size change.
   * @param {number} width
   * @param {number} height
   */
  #ensureBuffer(width, height) {
    this.width = width;
    this.height = height;
    const fits = width <= this.capWidth && height <= this.capHeight;
    // Shrinking far below the allocation gives the memory back; small changes reuse it.
    const wasteful = width * height * 4 < this.capWidth * this.capHeight;
    if (this.image && fits && !wasteful) return;
    // Headroom: a live view grows by a column at a time; a few percent more avoids
    // reallocating on each tick.
    this.capWidth = Math.max(1, Math.ceil(width * 1.125) + 8);
    this.capHeight = Math.max(1, Math.ceil(height * 1.125) + 8);
    this.buffer.width = this.capWidth;
    this.buffer.height = this.capHeight;
    this.image = new ImageData(this.capWidth, this.capHeight);
    this.rowMax = new Float64Array(this.capWidth);
    renderStats.bufferAllocations++;
  }

  /**
   * Paints the view into the offscreen buffer in one pass over the matrix. One column per
   * slot (the usual case): each value goes through a small index lookup table and the colour
   * table straight into the ImageData pixels. Gaps or several columns per slot: values are
   * max-pooled per slot, then each slot is coloured once.
   * @param {import('../view.js').View} view
   * @param {import('../types.js').ScaleKind} scaleKind
   * @param {Uint32Array} lut
   * @param {number} [colourMax] the value drawn with the top colour (view.max; lower with
   *   the brightness raised, higher values then saturate)
   */
  paint(view, scaleKind, lut, colourMax = view.max) {
    const w = view.slots;
    const h = view.rowIndex.length;
    this.#ensureBuffer(w, h);
    if (!this.image) return;
    const px = new Uint32Array(this.image.data.buffer);
    const scale = makeIndexScale(scaleKind, colourMax);
    const table = makeIndexTable(scaleKind, colourMax);
    const tlen = table.length;
    const { colSlot, slotCol } = view;
    const rows = view.matrix.rows;
    // Template row: no-data where no column falls in the slot, zero elsewhere.
    const tIdx = new Uint8Array(w);
    for (let s = 0; s < w; s++) tIdx[s] = slotCol[s] < 0 ? NO_DATA_INDEX : 0;
    const tPx = new Uint32Array(w);
    for (let s = 0; s < w; s++) tPx[s] = lut[tIdx[s]];
    const coarse = view.slotMs !== view.stepMs;
    // Fast path: every column has its own slot at a fixed offset (the usual, gap-free case).
    const n = colSlot.length;
    const off = n ? colSlot[0] : 0;
    let affine = !coarse && n > 0 && off >= 0;
    for (let j = 1; affine && j < n; j++) if (colSlot[j] !== off + j) affine = false;
    const rowMax = this.rowMax;
    const stride = this.capWidth;
    for (let k = 0; k < h; k++) {
      const base = k * stride;
      px.set(tPx, base);
      const values = rows[view.rowIndex[k]].values;
      if (affine) {
        const b = base + off;
        for (let j = 0; j < n; j++) {
          const v = values[j];
          px[b + j] = lut[v < tlen && v >= 0 ? table[v] ?? scale(v) : scale(v)];
        }
      } else {
        // Gaps or several steps per slot: max-pool the raw values per slot first (the scale is
        // monotone, so the hottest value gives the hottest colour), then colour each slot once.
        rowMax.fill(-1);
        for (let j = 0; j < n; j++) {
          const s = colSlot[j];
          const v = values[j];
          if (s >= 0 && v > rowMax[s]) rowMax[s] = v;
        }
        for (let s = 0; s < w; s++) {
          const v = rowMax[s];
          if (v >= 0) px[base + s] = lut[v < tlen ? table[v] ?? scale(v) : scale(v)];
        }
      }
    }
    // Only the w x h corner is drawn; upload just that.
    this.buffer.getContext('2d')?.putImageData(this.image, 0, 0, 0, 0, Math.max(1, w), Math.max(1, h));
  }

  /**
   * Paints precomputed palette indices (row-major, `w` per row), as diff mode does, into the
   * same reused buffer.
   * @param {number} w
   * @param {number} h
   * @param {Uint8Array} idx
   * @param {Uint32Array} lut
   */
  paintIndices(w, h, idx, lut) {
    this.#ensureBuffer(w, h);
    if (!this.image) return;
    const px = new Uint32Array(this.image.data.buffer);
    const stride = this.capWidth;
    for (let k = 0; k < h; k++) {
      const base = k * stride;
      const src = k * w;
      for (let s = 0; s < w; s++) px[base + s] = lut[idx[src + s]];
    }
    this.buffer.getContext('2d')?.putImageData(this.image, 0, 0, 0, 0, Math.max(1, w), Math.max(1, h));
  }

  /**
   * Full render of a view: paint the buffer, then draw it.
   * @param {import('../view.js').View} view
   * @param {import('../types.js').ScaleKind} scaleKind
   * @param {Uint32Array} lut
   * @param {number} cssWidth
   * @param {number} cssHeight
   * @param {number} [colourMax] see paint()
   */
  render(view, scaleKind, lut, cssWidth, cssHeight, colourMax = view.max) {
    const t0 = performance.now();
    this.paint(view, scaleKind, lut, colourMax);
    const t1 = performance.now();
    this.draw(cssWidth, cssHeight, null);
    renderStats.lastPaintMs = t1 - t0;
    renderStats.lastDrawMs = performance.now() - t1;
  }

  /**
   * Draws the buffer onto the visible canvas at CSS size x devicePixelRatio. `src` selects a
   * sub-rectangle of the buffer in cell units (used for the instant wheel-zoom preview).
   * @param {number} cssWidth
   * @param {number} cssHeight
   * @param {{ x: number, y: number, w: number, h: number }|null} src
   */
  draw(cssWidth, cssHeight, src) {
    const prepared = prepareCanvas(this.canvas, cssWidth, cssHeight);
    if (!prepared) return;
    const { ctx, bw, bh, resized } = prepared;
    if (resized) renderStats.canvasResizes++;
    ctx.imageSmoothingEnabled = false;
    if (this.width === 0 || this.height === 0) return;
    const s = src ?? { x: 0, y: 0, w: this.width, h: this.height };
    ctx.drawImage(this.buffer, s.x, s.y, s.w, s.h, 0, 0, bw, bh);
  }
}
