// The web UI under the admin surface's Content-Security-Policy: the policy is sent, and a
// session that signs in, draws, pins a cell, exports, turns on diff mode, downloads a
// snapshot and signs out triggers no CSP
// violation (no inline script, style or handler is blocked).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, login, matrixAfter, startFixture } from './harness.mjs';

/** @type {Awaited<ReturnType<typeof startFixture>>} */
let fx;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  fx = await startFixture();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  fx?.stop();
});

test('the_ui_works_under_the_csp_without_a_single_violation', async () => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  /** @type {string[]} */
  const problems = [];
  page.on('console', (m) => {
    if (/content security policy|refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  // Violations are also reported to the page as events; record them before any page script.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      // @ts-ignore test-only global
      (window.__cspViolations ||= []).push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });

  const res = await page.goto(`${fx.entry}/admin/keyviz?series=writes&range=1h&rows=64`);
  const csp = res?.headers()['content-security-policy'] ?? '';
  assert.match(csp, /^default-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res?.headers()['x-frame-options'], 'DENY');

  await matrixAfter(page, () => login(page, fx.hello));
  assert.equal(await page.isVisible('#app-view'), true);
  await matrixAfter(page, () => page.click('#refresh'));
  // Pin a cell: opens the detail panel (DOM built by script, positioned through CSSOM).
  const box = await page.locator('#plot').boundingBox();
  assert.ok(box, 'the plot has a box');
  await page.mouse.move(box.x + box.width * 0.4, box.y + box.height / 2);
  await page.waitForSelector('#tooltip:visible');
  await page.mouse.click(box.x + box.width * 0.4, box.y + box.height / 2);
  await page.waitForSelector('#detail:visible');
  const [png] = await Promise.all([page.waitForEvent('download'), page.click('#export-png')]);
  assert.match(png.suggestedFilename(), /\.png$/);
  const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  assert.match(csv.suggestedFilename(), /\.csv$/);
  // Diff mode and the snapshot (built in the page, downloaded as a Blob) under the same policy.
  await matrixAfter(page, () => page.selectOption('#diff', 'prev'));
  const [snap] = await Promise.all([page.waitForEvent('download'), page.click('#snapshot')]);
  assert.match(snap.suggestedFilename(), /^keyviz-snapshot-.*\.html$/);
  const [logout] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/admin/api/v1/auth/logout')),
    page.click('#logout'),
  ]);
  assert.equal(logout.status(), 204, 'logout with the session-derived CSRF token');
  await page.waitForSelector('#login-form:visible');

  // @ts-ignore test-only global
  const events = await page.evaluate(() => window.__cspViolations ?? []);
  assert.deepEqual([...problems, ...events], [], 'no CSP violations or page errors');
  await context.close();
});
