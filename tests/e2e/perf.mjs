// Measures the heatmap renderer in headless Chromium: full render (scale pass + pixel pass +
// putImageData + drawImage, then a 1-pixel readback so the draw is really rasterised) of
// synthetic matrices, median of 25 runs after 5 warm-ups. Also checks that a repeated render of
// the same size (an auto-refresh tick) allocates no buffer and does not resize the canvas.
// Usage: node perf.mjs   (starts the ui_fixture server only to serve the UI modules)
import { launchBrowser, startFixture } from './harness.mjs';

const SIZES = [
  { rows: 1024, cols: 500 },
  { rows: 1024, cols: 4096 },
];

const fx = await startFixture();
const browser = await launchBrowser();
try {
  for (const dpr of [1, 2]) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, deviceScaleFactor: dpr });
    const page = await context.newPage();
    await page.goto(`${fx.entry}/admin/perf-probe`);
    for (const size of SIZES) {
      for (const pooled of [false, true]) {
      const r = await page.evaluate(async ({ rows, cols, pooled, dpr }) => {
        const { HeatmapRenderer, renderStats } = await import('/admin/assets/js/render/heatmap.js');
        const { buildView, MAX_SLOTS } = await import('/admin/assets/js/view.js');
        // One pixel per cell, or as the page does it: at most one slot per device pixel.
        const maxSlots = pooled ? 1200 * dpr : MAX_SLOTS;
        const { buildLut } = await import('/admin/assets/js/scales.js');
        const step = 60_000;
        const t0 = 1_700_000_040_000; // a multiple of the step
        let seed = 42;
        const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
        const matrix = {
          column_unix_ms: Array.from({ length: cols }, (_, j) => t0 + j * step),
          rows: Array.from({ length: rows }, (_, i) => ({
            bucket_id: `route:${i}`, start: null, end: null, aggregate: false, route_count: 1,
            values: Array.from({ length: cols }, (_, j) => (i % 97 === 0 || (j % rows) === i ? 5000 : rand() < 0.2 ? 0 : Math.floor(rand() * 300))),
          })),
          series: 'writes', generated_at: '', step_ms: step,
        };
        const canvas = document.createElement('canvas');
        document.body.append(canvas);
        const renderer = new HeatmapRenderer(canvas);
        const lut = buildLut('heat', [227, 230, 235], [255, 255, 255]);
        const tv = performance.now();
        const view = buildView(/** @type {any} */ (matrix), { from: t0, to: t0 + cols * step }, null, maxSlots);
        const viewMs = performance.now() - tv;
        const once = () => {
          const t = performance.now();
          renderer.render(view, 'log', lut, 1200, 720);
          canvas.getContext('2d')?.getImageData(0, 0, 1, 1);
          return performance.now() - t;
        };
        for (let i = 0; i < 5; i++) once();
        const allocs = renderStats.bufferAllocations;
        const resizes = renderStats.canvasResizes;
        const times = [];
        for (let i = 0; i < 25; i++) times.push(once());
        times.sort((a, b) => a - b);
        const median = times[Math.floor(times.length / 2)];
        // The same from the parsed matrix: geometry (buildView) included.
        const full = [];
        for (let i = 0; i < 15; i++) {
          const t = performance.now();
          const v = buildView(/** @type {any} */ (matrix), { from: t0, to: t0 + cols * step }, null, maxSlots);
          renderer.render(v, 'log', lut, 1200, 720);
          canvas.getContext('2d')?.getImageData(0, 0, 1, 1);
          full.push(performance.now() - t);
        }
        full.sort((a, b) => a - b);
        canvas.remove();
        return { slots: view.slots, median, p90: times[Math.floor(times.length * 0.9)], viewMs, full: full[Math.floor(full.length / 2)], extraAllocs: renderStats.bufferAllocations - allocs, extraResizes: renderStats.canvasResizes - resizes };
      }, { ...size, pooled, dpr });
      console.log(`dpr=${dpr} ${size.rows} rows x ${size.cols} columns, ${pooled ? `pooled to ${r.slots} px columns` : 'one pixel per cell'}: render median ${r.median.toFixed(1)} ms (p90 ${r.p90.toFixed(1)} ms); with buildView median ${r.full.toFixed(1)} ms; re-renders allocated ${r.extraAllocs} buffers, resized the canvas ${r.extraResizes} times`);
      }
    }
    await context.close();
  }
} finally {
  await browser.close();
  fx.stop();
}
