// Browser tests of issue 14's UI parts against the fixture cluster (an hour of history): diff
// mode (the matrix request carries the baseline, the diverging palette is what is drawn, the
// legend names both windows in absolute time, tooltips give ratio and delta, the state comes
// back from the URL), the incident snapshot (downloaded, then opened in Chromium offline with
// every request refused: it shows the heatmap image, legend, series, window, hottest ranges and
// keys, node status and the query) and the PNG export with its legend and labels drawn in.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureScreenshotDir, launchBrowser, login, matrixAfter, SCREENSHOTS, settled, startFixture } from './harness.mjs';

/** @type {Awaited<ReturnType<typeof startFixture>>} */
let fx;
/** @type {import('playwright-core').Browser} */
let browser;
/** @type {import('playwright-core').BrowserContext} */
let context;
/** @type {import('playwright-core').Page} */
let page;

const DAY = 86_400_000;
/** The compared window: the 20 minutes after the fixture's step change (half an hour ago). */
let A = 0;
let B = 0;

before(async () => {
  ensureScreenshotDir();
  fx = await startFixture(180_000);
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light', acceptDownloads: true });
  page = await context.newPage();
  page.on('pageerror', (e) => console.error('pageerror:', e.message));
  A = fx.hello.step_change_unix_ms;
  B = A + 20 * 60_000;
  assert.ok(B < Date.now(), 'the compared window is in the past');
});

after(async () => {
  await browser?.close();
  fx?.stop();
});

/** `YYYY-MM-DD HH:MM:SS` in UTC, as the legend writes absolute time. */
const utc = (ms) => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');

/**
 * Palette indices of the drawn heatmap, inverted through the page's own diff colour table:
 * per sampled pixel, the nearest diff index and its distance (0 = exactly a diff colour).
 */
const diffPixels = (samplesX = 40) => page.evaluate(async (samplesX) => {
  const diff = await import('/admin/assets/js/diff.js');
  const css = getComputedStyle(document.documentElement);
  const rgb = (name) => {
    const h = css.getPropertyValue(name).trim().slice(1);
    return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
  };
  const lut = diff.buildDiffLut(rgb('--cell-zero'));
  const colours = Array.from(lut, (v) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255]);
  const canvas = /** @type {HTMLCanvasElement} */ (document.getElementById('heatmap'));
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const rows = Number(document.getElementById('plot').dataset.rows);
  const out = [];
  for (let k = 0; k < rows; k++) {
    const y = Math.floor(((k + 0.5) / rows) * canvas.height);
    for (let s = 0; s < samplesX; s++) {
      const x = Math.floor(((s + 0.5) / samplesX) * canvas.width);
      const p = (y * canvas.width + x) * 4;
      let best = 0;
      let bestD = Infinity;
      colours.forEach((c, i) => {
        const d = (c[0] - data[p]) ** 2 + (c[1] - data[p + 1]) ** 2 + (c[2] - data[p + 2]) ** 2;
        if (d < bestD) { bestD = d; best = i; }
      });
      out.push({ k, index: best, d: bestD });
    }
  }
  return out;
}, samplesX);

/** The tooltip's lines after hovering the plot at fraction (fx, fy). */
async function tooltipAt(fxr, fyr) {
  const box = await page.locator('#plot').boundingBox();
  await page.mouse.move(box.x + box.width * fxr, box.y + box.height * fyr);
  await page.waitForSelector('#tooltip:visible');
  return page.evaluate(() => {
    const dts = [...document.querySelectorAll('#tooltip dt')].map((d) => d.textContent);
    const dds = [...document.querySelectorAll('#tooltip dd')].map((d) => d.textContent);
    return Object.fromEntries(dts.map((t, i) => [t, dds[i]]));
  });
}

describe('diff mode, snapshot and PNG legend', () => {
  test('a_diff_permalink_asks_for_the_previous_window_and_draws_a_diverging_picture', async () => {
    await page.goto(`${fx.entry}/admin/keyviz`);
    await matrixAfter(page, () => login(page, fx.hello));
    const { params, body } = await matrixAfter(page, () => page.goto(`${fx.entry}/admin/keyviz?series=writes&range=custom&from=${A}&to=${B}&rows=128&diff=prev`));
    assert.equal(params.get('baseline_from_unix_ms'), String(A - (B - A)), 'the baseline starts one window earlier');
    assert.equal(params.get('baseline_to_unix_ms'), String(A), 'and ends where the window starts');
    assert.ok(body.compare && body.compare.rows.length === body.rows.length, 'the server compared every row');
    assert.equal(await page.inputValue('#diff'), 'prev', 'the control shows the mode from the URL');
    const legend = await page.textContent('#diff-legend-text');
    assert.ok(legend.includes(`${utc(A)} – ${utc(B)} UTC compared with ${utc(A - (B - A))} – ${utc(A)} UTC`), `the legend names both windows in absolute time: ${legend}`);
    assert.match(legend, /previous window of the same width/);
    const ticks = await page.$$eval('#legend .legend-ticks span', (s) => s.map((e) => e.textContent));
    assert.ok(ticks.includes('×1') && ticks.some((t) => t.startsWith('÷')) && ticks.some((t) => /^×\d/.test(t) && t !== '×1'), `ratio ticks either side of ×1: ${ticks}`);
    // What is drawn is the diverging palette: every sampled pixel is one of its colours.
    const px = await diffPixels();
    assert.ok(px.every((p) => p.d <= 12), `every pixel is a diff colour (worst distance ${Math.max(...px.map((p) => p.d))})`);
    // The constant hot range runs as it did: near white (no change); the route whose writes
    // stepped up at A is orange, the one that stepped down is blue.
    const layout = JSON.parse(await page.getAttribute('#key-axis', 'data-buckets'));
    const level = (bucket) => {
      const k = layout.indexOf(bucket);
      assert.ok(k >= 0, `${bucket} is a row`);
      const v = px.filter((p) => p.k === k && p.index !== 255).map((p) => p.index).sort((a, b) => a - b);
      return v[Math.floor(v.length / 2)];
    };
    const hot = level(fx.hello.hot_key_route);
    assert.ok(Math.abs(hot - 127.5) < 20, `the steady hot row is drawn near "no change" (index ${hot})`);
    const up = level(fx.hello.step_up_route);
    const down = level(fx.hello.step_down_route);
    assert.ok(up > 200, `the range that grew is orange (index ${up})`);
    assert.ok(down < 55, `the range that shrank is blue (index ${down})`);
    const stat = JSON.parse(await page.getAttribute('#plot', 'data-diff'));
    assert.ok(stat.more > 0 && stat.less > 0, `rows above and below the baseline: ${JSON.stringify(stat)}`);
    await page.mouse.move(0, 0);
    await page.screenshot({ path: `${SCREENSHOTS}diff.png` });
  });

  test('diff_tooltips_give_the_cell_and_row_ratio_and_delta', async () => {
    const layout = JSON.parse(await page.getAttribute('#key-axis', 'data-buckets'));
    const up = layout.indexOf(fx.hello.step_up_route);
    const lines = await tooltipAt(0.5, (up + 0.5) / layout.length);
    const m = /^([\d,]+) vs ([\d,]+) baseline: ×([\d.]+), delta \+([\d,.]+)$/.exec(lines['Diff (row)']);
    assert.ok(m, `the row's ratio and delta: ${lines['Diff (row)']}`);
    const [cur, base, ratio] = [m[1], m[2], m[3]].map((x) => Number(x.replace(/,/g, '')));
    assert.ok(ratio > 4 && Math.abs(ratio - cur / base) / ratio < 0.05, `ratio ${ratio} = ${cur} / ${base}`);
    assert.match(lines['This cell'], /^[\d,]+ now; the row's baseline averages [\d.]+ per cell/, lines['This cell']);
    await page.mouse.move(0, 0);
  });

  test('one_day_earlier_has_no_history_here_so_every_range_with_traffic_is_new', async () => {
    const { params } = await matrixAfter(page, () => page.selectOption('#diff', 'day'));
    assert.equal(params.get('baseline_from_unix_ms'), String(A - DAY));
    assert.equal(params.get('baseline_to_unix_ms'), String(B - DAY));
    assert.match(page.url(), /diff=day/, 'the mode is in the URL');
    assert.match(await page.textContent('#diff-legend-text'), /same window 1 day earlier/);
    const px = await diffPixels();
    const drawn = px.filter((p) => p.index !== 255 && p.index !== 0);
    assert.ok(drawn.length > 0 && drawn.every((p) => p.index === 254), 'every cell with traffic is at the "more / new" end');
  });

  test('a_custom_baseline_comes_back_from_the_url', async () => {
    const bf = A - 20 * 60_000;
    const bt = A - 10 * 60_000;
    const { params } = await matrixAfter(page, () => page.goto(`${fx.entry}/admin/keyviz?series=writes&range=custom&from=${A}&to=${B}&rows=128&diff=custom&bfrom=${bf}&bto=${bt}`));
    assert.equal(params.get('baseline_from_unix_ms'), String(bf));
    assert.equal(params.get('baseline_to_unix_ms'), String(bt));
    assert.equal(await page.inputValue('#diff'), 'custom');
    assert.equal(await page.isVisible('#diff-custom'), true, 'the custom baseline fields show');
    assert.ok((await page.inputValue('#diff-from')).length >= 16, 'the baseline start is filled in');
    const legend = await page.textContent('#diff-legend-text');
    assert.ok(legend.includes(`compared with ${utc(bf)} – ${utc(bt)} UTC`), legend);
    assert.match(legend, /scaled ×2\.00 to the current length/, 'a 10 min baseline is scaled to the 20 min window');
    // Back to the plain heatmap: no baseline asked for, the plain legend returns.
    const off = await matrixAfter(page, () => page.selectOption('#diff', 'off'));
    assert.equal(off.params.get('baseline_from_unix_ms'), null);
    assert.equal(await page.$('#diff-legend-text'), null);
    assert.doesNotMatch(page.url(), /diff=/);
  });

  test('the_snapshot_opens_offline_and_shows_the_heatmap_legend_window_keys_nodes_and_query', async () => {
    await matrixAfter(page, () => page.selectOption('#diff', 'prev'));
    await page.waitForFunction(() => document.getElementById('hotkeys-list')?.dataset.state === 'ready', null, { timeout: 30_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#snapshot')]);
    assert.match(download.suggestedFilename(), /^keyviz-snapshot-writes-.*\.html$/);
    // Downloads are stored without their name: give the copy its .html so Chromium renders it.
    const dir = mkdtempSync(join(tmpdir(), 'keyviz-snapshot-'));
    const file = join(dir, download.suggestedFilename());
    copyFileSync(await download.path(), file);
    const html = readFileSync(file, 'utf8');
    assert.doesNotMatch(html, /<script/i, 'no script in the file');
    assert.doesNotMatch(html, /(src|href)="(https?:|\/\/|\/)/i, 'no external reference');
    // Open it in a fresh offline context that refuses every request but the file itself.
    const offline = await browser.newContext({ offline: true });
    const requests = [];
    await offline.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:')) return route.continue();
      requests.push(url);
      return route.abort();
    });
    const snap = await offline.newPage();
    const cspViolations = [];
    snap.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
    await snap.goto(`file://${file}`);
    const img = await snap.evaluate(async () => {
      const el = /** @type {HTMLImageElement} */ (document.getElementById('heatmap'));
      await el.decode();
      return { w: el.naturalWidth, h: el.naturalHeight, src: el.src.slice(0, 22) };
    });
    assert.equal(img.src, 'data:image/png;base64,', 'the heatmap is an inline PNG');
    assert.ok(img.w > 800 && img.h > 300, `the image decodes offline (${img.w}x${img.h})`);
    assert.equal(await snap.textContent('#series'), 'writes');
    assert.equal(await snap.textContent('#window'), `${utc(A)} UTC .. ${utc(B)} UTC`);
    assert.equal(await snap.textContent('#keys'), '(start) .. (end)', 'all keys');
    assert.match(await snap.textContent('#scale'), /diff/);
    assert.ok((await snap.textContent('#diff')).includes(`compared with ${utc(A - (B - A))} – ${utc(A)} UTC`), 'the diff legend says what is compared with what');
    assert.match(await snap.textContent('#legend'), /^Colours: blue: less than the baseline, white: no change, orange: more \(log2 ratio, ÷\d+ … ×\d+/);
    const ranges = await snap.$$eval('#ranges tr', (t) => t.slice(1).map((r) => r.textContent));
    assert.ok(ranges.length >= 3, 'hottest ranges are listed');
    const hotKeys = await snap.textContent('#hot-keys');
    assert.ok(hotKeys.includes('user:0022:counter'), 'the hottest key is named');
    assert.equal(await snap.textContent('#nodes-summary'), '3/3 nodes answered');
    const nodes = await snap.$$eval('#nodes tr', (t) => t.slice(1).map((r) => r.textContent));
    assert.equal(nodes.length, 3);
    assert.ok(nodes.every((n) => /ok/.test(n)), `every node answered: ${nodes}`);
    assert.ok(nodes.some((n) => n.includes('catalog_divergence [route:42]: ')), `warnings are named: ${nodes}`);
    const query = await snap.textContent('#query');
    assert.match(query, /\/admin\/api\/v1\/keyviz\/matrix\?series=writes&from_unix_ms=\d+&to_unix_ms=\d+&rows=128&baseline_from_unix_ms=\d+&baseline_to_unix_ms=\d+/);
    assert.match(await snap.textContent('#permalink'), /range=custom.*diff=prev/);
    assert.deepEqual(requests, [], 'the file makes no request');
    assert.deepEqual(cspViolations, []);
    await snap.screenshot({ path: `${SCREENSHOTS}snapshot.png`, fullPage: true });
    await offline.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the_png_export_carries_the_legend_bar_and_labels', async () => {
    /** Decodes a downloaded PNG in the page and reports what its regions hold. */
    const inspect = (b64, isDiff) => page.evaluate(async ({ b64, isDiff }) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const heat = /** @type {HTMLCanvasElement} */ (document.getElementById('heatmap'));
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      const at = (x, y) => [d[(y * c.width + x) * 4], d[(y * c.width + x) * 4 + 1], d[(y * c.width + x) * 4 + 2]];
      const near = (p, q) => (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 + (p[2] - q[2]) ** 2 < 200;
      // The two ends of the legend bar's palette, below the heat.
      const ends = isDiff ? [[33, 102, 172], [179, 73, 6]] : [[30, 40, 120], [255, 240, 150]];
      const found = [false, false];
      let ink = 0;
      for (let y = 0; y < c.height; y++) {
        for (let x = 0; x < c.width; x++) {
          const p = at(x, y);
          if (y > c.height - 140 * (heat.width / heat.clientWidth)) ends.forEach((e, i) => { if (near(p, e)) found[i] = true; });
          if (y < 40 && p[0] < 90 && p[1] < 90 && p[2] < 90) ink++;
        }
      }
      return { w: c.width, h: c.height, heatW: heat.width, heatH: heat.height, found, ink };
    }, { b64, isDiff });
    const [diffPng] = await Promise.all([page.waitForEvent('download'), page.click('#export-png')]);
    const diffInfo = await inspect(readFileSync(await diffPng.path()).toString('base64'), true);
    assert.ok(diffInfo.h > diffInfo.heatH + 100, `room for title, labels and legend: ${JSON.stringify(diffInfo)}`);
    assert.deepEqual(diffInfo.found, [true, true], 'the diverging legend bar is drawn below the heat');
    assert.ok(diffInfo.ink > 200, 'a title is drawn above it');
    const plain = await matrixAfter(page, () => page.selectOption('#diff', 'off'));
    assert.equal(plain.status, 200);
    const [png] = await Promise.all([page.waitForEvent('download'), page.click('#export-png')]);
    const info = await inspect(readFileSync(await png.path()).toString('base64'), false);
    assert.deepEqual(info.found, [true, true], 'the heat legend bar is drawn below the heat');
    await settled(page);
  });
});

