// @ts-check
/**
 * HiDPI canvas sizing shared by every drawing module: one place decides the device pixel
 * ratio and when a canvas's backing store is resized.
 */

/** Device pixel ratio used for drawing, clamped to [1, 4]. */
export function pixelRatio() {
  return Math.min(4, Math.max(1, window.devicePixelRatio || 1));
}

/**
 * Sizes `canvas` to cssWidth × cssHeight CSS pixels at the device pixel ratio — the backing
 * store is reallocated only when its pixel size changes — and returns its 2D context with an
 * identity transform, cleared; null when the canvas has no 2D context.
 * @param {HTMLCanvasElement} canvas
 * @param {number} cssWidth
 * @param {number} cssHeight
 * @returns {{ ctx: CanvasRenderingContext2D, bw: number, bh: number, dpr: number, resized: boolean } | null}
 */
export function prepareCanvas(canvas, cssWidth, cssHeight) {
  const dpr = pixelRatio();
  const bw = Math.max(1, Math.round(cssWidth * dpr));
  const bh = Math.max(1, Math.round(cssHeight * dpr));
  const resized = canvas.width !== bw || canvas.height !== bh;
  if (resized) {
    canvas.width = bw;
    canvas.height = bh;
  }
  canvas.style.width = `${cssWidth}px`;
  canvas.style.height = `${cssHeight}px`;
  const ctx = canvas.getContext('2d');
  if (!ctx) return null;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, bw, bh);
  return { ctx, bw, bh, dpr, resized };
}
