// Shared helpers for the e2e tests: start the real fixture cluster (the ui_fixture example
// binary: three keyviz-admin routers with real samplers), launch headless Chromium, log in,
// and read back what the page drew.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
const TARGET = process.env.CARGO_TARGET_DIR || `${REPO}target`;
// Screenshots go under target/ on every run; KEYVIZ_UPDATE_SCREENSHOTS=1 refreshes the
// committed ones in docs/screenshots/ (so a plain test run leaves the checkout clean).
export const SCREENSHOTS = process.env.KEYVIZ_UPDATE_SCREENSHOTS === '1'
  ? `${REPO}docs/screenshots/`
  : `${TARGET}/e2e-screenshots/`;
mkdirSync(SCREENSHOTS, { recursive: true });
export const FIXTURE_BIN = process.env.KEYVIZ_UI_FIXTURE || `${TARGET}/debug/examples/ui_fixture`;
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * Starts the fixture and resolves with its hello line (ports, credentials) once it is printed,
 * or rejects after `timeoutMs`; `args` go to the fixture (e.g. `--history-min 3` for a young
 * cluster). The returned `stop()` kills the process.
 */
export async function startFixture(timeoutMs = 180_000, args = []) {
  if (!existsSync(FIXTURE_BIN)) throw new Error(`fixture binary missing: ${FIXTURE_BIN} (build it with cargo build -p keyviz-admin --example ui_fixture)`);
  const child = spawn(FIXTURE_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const lines = createInterface({ input: child.stdout });
  const hello = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fixture did not start within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`fixture exited with ${code}; stderr: ${stderr}`)); });
    lines.once('line', (line) => {
      clearTimeout(timer);
      try { resolve(JSON.parse(line)); } catch (e) { reject(new Error(`bad hello line ${line}: ${e}`)); }
    });
  });
  const entry = hello.nodes[0].url;
  await waitFor(async () => (await fetch(`${entry}/admin`)).ok, 20_000, 'admin index on the entry node');
  return {
    hello,
    entry,
    async stopNode(nodeId) {
      const res = await fetch(`${hello.control}/stop?node=${encodeURIComponent(nodeId)}`, { method: 'POST' });
      if (res.status !== 204) throw new Error(`stop ${nodeId}: HTTP ${res.status}`);
    },
    /** Starts a stopped node again on its address (a restart that keeps its history). */
    async startNode(nodeId) {
      const res = await fetch(`${hello.control}/start?node=${encodeURIComponent(nodeId)}`, { method: 'POST' });
      if (res.status !== 204) throw new Error(`start ${nodeId}: HTTP ${res.status}`);
    },
    stop() {
      child.removeAllListeners('exit');
      child.kill('SIGKILL');
    },
  };
}

/** Polls `check` until it returns truthy or the deadline passes. */
export async function waitFor(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

export function ensureScreenshotDir() {
  mkdirSync(SCREENSHOTS, { recursive: true });
}

/** Fills the login form and waits until the heatmap is drawn. */
export async function login(page, hello, secret = hello.secret_key) {
  await page.waitForSelector('#login-form:visible');
  await page.fill('#access-key', hello.access_key);
  await page.fill('#secret-key', secret);
  await page.click('#login-submit');
}

/** Waits until the page reports a finished render (ready, empty or error). */
export async function settled(page, timeoutMs = 15_000) {
  await page.waitForFunction(() => ['ready', 'empty', 'error'].includes(document.body.dataset.state ?? ''), null, { timeout: timeoutMs });
}

/**
 * Runs `action` and returns the URL query of the matrix request it caused, plus its JSON. A
 * view loads its own series first, then companions (the other direction for the shared row
 * layout, the leader reads for the read roles): the first matrix request sent is the view's.
 */
export async function matrixAfter(page, action) {
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.url().includes('/admin/api/v1/keyviz/matrix') && r.method() === 'GET', { timeout: 60_000 }),
    action(),
  ]);
  const res = await req.response();
  if (!res) throw new Error(`matrix request ${req.url()} failed: ${req.failure()?.errorText}`);
  const body = await res.json();
  await settled(page);
  return { params: new URL(res.url()).searchParams, body, status: res.status() };
}

/**
 * Palette index (0 = zero cell, 1..254 = palette, 255 = no data) of the pixel at the centre
 * of every displayed row, sampled across `samples` columns; inverts the drawn colours through
 * the page's own lookup table. Returns one array of indices per row.
 */
export async function rowIndices(page, samples = 48) {
  return page.evaluate(async (samples) => {
    const scales = await import('/admin/assets/js/scales.js');
    const canvas = /** @type {HTMLCanvasElement} */ (document.getElementById('heatmap'));
    const ctx = canvas.getContext('2d');
    const css = getComputedStyle(document.documentElement);
    const rgb = (name) => {
      const h = css.getPropertyValue(name).trim().slice(1);
      return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
    };
    const palette = /** @type {HTMLSelectElement} */ (document.getElementById('palette')).value;
    const lut = scales.buildLut(palette, rgb('--cell-zero'), rgb('--cell-nodata'));
    const colours = Array.from(lut, (v) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255]);
    const rows = document.querySelectorAll('#key-axis .key-label').length ? Number(document.getElementById('plot').dataset.rows) : 0;
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const out = [];
    for (let k = 0; k < rows; k++) {
      const y = Math.floor(((k + 0.5) / rows) * canvas.height);
      const line = [];
      for (let s = 0; s < samples; s++) {
        const x = Math.floor(((s + 0.5) / samples) * canvas.width);
        const p = (y * canvas.width + x) * 4;
        let best = 0;
        let bestD = Infinity;
        colours.forEach((c, i) => {
          const d = (c[0] - data[p]) ** 2 + (c[1] - data[p + 1]) ** 2 + (c[2] - data[p + 2]) ** 2;
          if (d < bestD) { bestD = d; best = i; }
        });
        line.push(best);
      }
      out.push(line);
    }
    return out;
  }, samples);
}

/** Median of the non-no-data indices of a row (0 when the row has no data at all). */
export function rowLevel(indices) {
  const v = indices.filter((i) => i !== 255).sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)] : 0;
}

/**
 * Horizontal position (fraction of the plot width) of time `t` (unix ms), recovered from the
 * page's own time-axis ticks, which share the heatmap's domain; null with fewer than 2 ticks.
 */
export async function xFraction(page, t) {
  return page.evaluate((t) => {
    const ticks = [...document.querySelectorAll('#time-axis .tick')];
    if (ticks.length < 2) return null;
    const t0 = Date.parse(ticks[0].getAttribute('title') ?? '');
    const t1 = Date.parse(ticks[1].getAttribute('title') ?? '');
    const x0 = parseFloat(ticks[0].style.left);
    const x1 = parseFloat(ticks[1].style.left);
    const w = document.getElementById('plot')?.clientWidth ?? 1;
    return (x0 + ((t - t0) * (x1 - x0)) / (t1 - t0)) / w;
  }, t);
}

/**
 * The drawn row layout, top to bottom, as bucket ids: the union of the view's series (so it
 * may hold rows the answer of this series lacks, drawn all zero).
 */
export async function layoutOf(page) {
  return JSON.parse((await page.getAttribute('#key-axis', 'data-buckets')) ?? '[]');
}
