// `keyviz snapshot` against the real store (`keyviz demo`), then the HTML file opened in
// headless Chromium with the network off: everything it shows (the heatmap image, axes,
// legend, hottest ranges and keys, node status, query) must come from the file alone.
// Skipped, with a message, when the keyviz binary has not been built (scripts/e2e.sh builds it).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { ensureScreenshotDir, launchBrowser, REPO, SCREENSHOTS, waitFor } from './harness.mjs';

const BIN = process.env.KEYVIZ_BIN || `${process.env.CARGO_TARGET_DIR || `${REPO}target`}/debug/keyviz`;
const skip = existsSync(BIN) ? false : `keyviz binary not built (${BIN}); run cargo build --bin keyviz`;

const free = (port) => new Promise((resolve) => {
  const s = createServer();
  s.once('error', () => resolve(false));
  s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
});

async function pickPorts() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ports = [base, base + 1000, base + 2000];
    const ok = await Promise.all(ports.flatMap((p) => [p, p + 1, p + 2]).map(free));
    if (ok.every(Boolean)) return { resp: ports[0], admin: ports[1], raft: ports[2] };
  }
  throw new Error('no free port range found');
}

let demo;
let browser;
let secret = '';
let adminPort = 0;
let dir = '';

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'keyviz-snapshot-e2e-'));
  const ports = await pickPorts();
  adminPort = ports.admin;
  demo = spawn(BIN, ['demo', `--resp-port=${ports.resp}`, `--admin-port=${ports.admin}`, `--raft-port=${ports.raft}`, '--step=1s'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  demo.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const lines = createInterface({ input: demo.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`keyviz demo not ready in 90 s; stderr tail: ${stderr}`)), 90_000);
    demo.once('exit', (code) => { clearTimeout(timer); reject(new Error(`keyviz demo exited with ${code}; stderr tail: ${stderr}`)); });
    lines.on('line', (line) => {
      const s = /secret `([^`]+)`/.exec(line);
      if (s) secret = s[1];
      if (line.startsWith('Press Ctrl-C')) {
        clearTimeout(timer);
        demo.removeAllListeners('exit');
        resolve(undefined);
      }
    });
  });
  browser = await launchBrowser();
  ensureScreenshotDir();
});

after(async () => {
  await browser?.close();
  if (demo && demo.exitCode === null) {
    const exited = new Promise((resolve) => demo.once('exit', resolve));
    demo.kill('SIGTERM');
    const timer = setTimeout(() => demo.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs `keyviz snapshot` against node `node` (0..2) into `file`; resolves with its exit
 * code and stderr. */
const snapshot = (file, node) => new Promise((resolve) => {
  execFile(BIN, ['snapshot', '--admin', `127.0.0.1:${adminPort + node}`, '--from', '-5m', '-k', '5', '-o', file], {
    env: { ...process.env, KEYVIZ_ADMIN_USER: 'admin', KEYVIZ_ADMIN_PASSWORD: secret, KEYVIZ_LOG: 'off' },
    timeout: 60_000,
  }, (err, _stdout, stderr) => resolve({ code: err ? err.code : 0, stderr }));
});

test('the snapshot file shows the heatmap, legend, hot keys and nodes with the network off', { skip, timeout: 180_000 }, async () => {
  const file = join(dir, 'incident.html');
  // The demo's workload needs a few closed steps before its hot key shows. Every run logs
  // in once, and a node allows 5 logins a minute per address: try every 5 s, rotating
  // over the three nodes.
  let attempt = 0;
  await waitFor(async () => {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 5_000));
    const r = await snapshot(file, attempt++ % 3);
    assert.equal(r.code, 0, r.stderr);
    // The hot-key table itself must name it (the key axis may show it earlier).
    const html = readFileSync(file, 'utf8');
    const table = html.slice(html.indexOf('id="hot-keys"'));
    return table.slice(0, table.indexOf('</table>') + 1 || undefined).includes('hot:counter');
  }, 60_000, 'a snapshot listing the demo hot key');

  const context = await browser.newContext({ offline: true, viewport: { width: 1300, height: 1400 } });
  const page = await context.newPage();
  const fetched = [];
  page.on('request', (r) => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) fetched.push(r.url()); });
  await page.goto(pathToFileURL(file).href);

  // The inline PNG decoded (it is not a broken image) at its own size.
  const img = await page.$eval('#heatmap', (el) => ({ w: el.naturalWidth, h: el.naturalHeight, complete: el.complete, shown: el.getBoundingClientRect().width }));
  assert.ok(img.complete && img.w > 0 && img.h > 0, JSON.stringify(img));
  assert.ok(img.shown > 400, `the heatmap is drawn wide: ${JSON.stringify(img)}`);
  assert.ok(await page.isVisible('#legend'));
  const legend = await page.textContent('#legend');
  assert.match(legend, /writes per cell \(log scale/);
  assert.match(await page.textContent('#scale-max'), /^\d+$/);
  const times = await page.$$eval('#time-axis span', (s) => s.map((e) => e.textContent));
  assert.equal(times.length, 3);
  assert.ok(times.every((t) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(t)), times.join(' '));
  const keyLabels = await page.$$eval('#key-axis span', (s) => s.length);
  assert.ok(keyLabels > 0);
  assert.match(await page.textContent('#hot-keys'), /hot:counter/);
  assert.match(await page.textContent('#ranges'), /%/);
  assert.equal(await page.textContent('#nodes-summary'), '3/3 nodes answered');
  assert.equal(await page.$$eval('#nodes .ok', (s) => s.length), 3);
  assert.match(await page.textContent('#command'), /keyviz snapshot --admin/);
  assert.doesNotMatch(await page.content(), new RegExp(secret));
  assert.deepEqual(fetched, [], 'nothing fetched from the network');
  await page.screenshot({ path: `${SCREENSHOTS}snapshot.png`, fullPage: false });
  await context.close();
});
