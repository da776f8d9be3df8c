// Browser tests of the hot-key views and the key-axis labels, against the ui_fixture cluster
// (real samplers with named hot keys: all of route user:0022's heavy writes go to
// `user:0022:counter`, all of user:0045's heavy reads to `user:0045:profile`).
// One fixture and one page for the whole file; the last test stops a node.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ensureScreenshotDir, launchBrowser, login, matrixAfter, SCREENSHOTS, settled, startFixture, waitFor,
} from './harness.mjs';

/** @type {Awaited<ReturnType<typeof startFixture>>} */
let fx;
/** @type {import('playwright-core').Browser} */
let browser;
/** @type {import('playwright-core').BrowserContext} */
let context;
/** @type {import('playwright-core').Page} */
let page;

const text = (b64) => (b64 == null ? null : Buffer.from(b64, 'base64').toString('latin1'));
const HOTKEYS = '/admin/api/v1/keyviz/hotkeys';
/** A whole-hour hot-key query over every row takes seconds in a debug build on a busy machine. */
const SLOW = 90_000;

/** Runs `action` and returns the hot-key request it caused (first one matching `kind`), with its JSON. */
async function hotKeysAfter(action, match = () => true) {
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url().includes(HOTKEYS) && match(new URL(r.url()).searchParams), { timeout: SLOW }),
    action(),
  ]);
  return { params: new URL(res.url()).searchParams, status: res.status(), body: await res.json() };
}

/** Waits until the top-keys panel finished loading. */
async function panelReady() {
  await page.waitForFunction(() => ['ready', 'error'].includes(document.getElementById('keys-panel')?.dataset.state ?? ''), null, { timeout: SLOW });
}

/** The page's view window (the "Hottest keys" scope uses it too). */
const viewOf = () => page.evaluate(() => ({ rows: Number(document.getElementById('plot')?.dataset.rows) }));

before(async () => {
  ensureScreenshotDir();
  fx = await startFixture();
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, colorScheme: 'light' });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: fx.entry });
  page = await context.newPage();
  page.on('pageerror', (e) => console.error('pageerror:', e.message));
  await page.goto(`${fx.entry}/admin/keyviz?series=writes&range=1h&rows=256`);
  await matrixAfter(page, () => login(page, fx.hello));
});

after(async () => {
  await browser?.close();
  fx?.stop();
});

describe('hot keys and key labels', () => {
  test('the_hottest_keys_list_names_the_views_hottest_key_with_its_share', async () => {
    const [{ body }, hot] = await Promise.all([
      matrixAfter(page, () => page.click('#refresh')),
      hotKeysAfter(async () => {}),
    ]);
    assert.equal(hot.status, 200, JSON.stringify(hot.body));
    assert.equal(hot.params.get('series'), 'writes');
    assert.equal(hot.params.get('key_start'), null, 'the whole key space of the view');
    assert.ok(Number(hot.params.get('to_unix_ms')) > Number(hot.params.get('from_unix_ms')), 'the view window');
    assert.ok(Number(hot.params.get('to_unix_ms')) - Number(hot.params.get('from_unix_ms')) >= 3600_000, 'an hour or more');
    assert.equal(text(hot.body.keys[0].key), fx.hello.hot_key, 'the fixture\'s hot key is the hottest');
    await page.waitForFunction(() => document.getElementById('hotkeys-list')?.dataset.state === 'ready', null, { timeout: SLOW });
    const first = await page.textContent('#hotkeys-list li:first-child');
    assert.ok(first.includes(fx.hello.hot_key), first);
    const pct = (hot.body.keys[0].share * 100);
    assert.ok(first.includes(`${pct >= 10 ? pct.toFixed(0) : pct.toFixed(1)} %`), `share shown: ${first}`);
    // The view's total is the exact total of all rows (writes deduplicated), so the share is the key's part of it.
    const rowsTotal = body.rows.reduce((a, r) => a + r.values.reduce((x, v) => x + v, 0), 0);
    assert.ok(hot.body.total >= rowsTotal * 0.95 && hot.body.total <= rowsTotal * 1.05, `total ${hot.body.total} ≈ matrix ${rowsTotal}`);
    // Switching series lists the read-hot key instead.
    const readsAnswer = hotKeysAfter(async () => {}, (q) => q.get('series') === 'reads');
    await matrixAfter(page, () => page.selectOption('#series', 'reads'));
    // While the reads answer is computed, the writes keys are not left under the reads scope.
    assert.ok(!(await page.textContent('#hotkeys-list')).includes(fx.hello.hot_key), 'no stale keys of another series');
    const reads = await readsAnswer;
    assert.equal(reads.params.get('series'), 'reads');
    await page.waitForFunction((k) => document.getElementById('hotkeys-list')?.textContent?.includes(k), fx.hello.read_hot_key, { timeout: SLOW });
    await matrixAfter(page, () => page.selectOption('#series', 'writes'));
  });

  test('key_axis_labels_name_real_keys_with_common_prefixes_elided_and_fit_the_axis', async () => {
    const { body } = await matrixAfter(page, () => page.click('#refresh'));
    const labels = await page.$$eval('#key-axis .key-label', (els) => {
      const axis = document.getElementById('key-axis').getBoundingClientRect();
      return els.map((e) => {
        const r = e.getBoundingClientRect();
        return {
          k: Number(e.dataset.row), text: e.textContent, title: e.title,
          inside: r.top >= axis.top - 0.5 && r.bottom <= axis.bottom + 0.5 && r.left >= axis.left && r.right <= axis.right,
          clipped: e.scrollWidth > e.clientWidth,
        };
      });
    });
    assert.ok(labels.length >= 10, `${labels.length} labels`);
    let prev = null;
    for (const l of labels) {
      const row = body.rows[l.k];
      const full = text(row.first_key) ?? row.preview;
      assert.ok(l.inside, `label ${l.text} inside the axis box`);
      assert.ok(!l.clipped, `label ${l.text} not clipped`);
      if (l.text.startsWith('…')) {
        assert.ok(prev, 'only a label below another one is elided');
        assert.ok(full.endsWith(l.text.slice(1)), `${l.text} is the tail of ${full}`);
      } else {
        assert.equal(l.text, full, 'a label without elision is the whole first key');
      }
      if (row.first_key) assert.ok(l.title.includes(`first key: ${full}`), `hover text names the full key: ${l.title}`);
      assert.match(l.title, /range: \[.*, .*\)/, 'and the exact [start, end) range');
      prev = full;
    }
    assert.ok(labels.some((l) => l.text.startsWith('…')), 'neighbouring user: keys elide their common prefix');
    // The busiest row is always labelled.
    const totals = body.rows.map((r) => r.values.reduce((a, v) => a + v, 0));
    const busiest = totals.indexOf(Math.max(...totals));
    assert.ok(labels.some((l) => l.k === busiest), `the busiest row ${body.rows[busiest].bucket_id} is labelled`);
  });

  test('a_dense_axis_keeps_the_top_label_whole_and_labels_the_busiest_rows', async () => {
    // 300 rows (more than the fixture has routes), so injected: the first row is the hot one,
    // the case where the top label used to stick out of the axis and read "not" for "hot".
    const step = 5000;
    const t0 = Math.floor(Date.now() / step) * step - 60 * step;
    const cols = Array.from({ length: 60 }, (_, j) => t0 + j * step);
    const b64 = (s) => Buffer.from(s).toString('base64');
    const rows = Array.from({ length: 300 }, (_, i) => {
      const name = i === 0 ? 'hot' : `user:${String(i).padStart(4, '0')}`;
      // Row 1 is busy too, right under the hottest: both must be labelled.
      const busy = i === 0 ? 5000 : i === 217 ? 4000 : i === 1 ? 3000 : 1;
      return {
        bucket_id: `route:${i}`, start: i === 0 ? null : b64(name), end: b64(i === 299 ? 'zzz' : `user:${String(i + 1).padStart(4, '0')}`),
        first_key: b64(i === 0 ? 'hot:counter' : `${name}:x`), aggregate: false, route_count: 1,
        values: cols.map(() => busy), raft_group_ids: cols.map(() => 1), leader_terms: cols.map(() => 1),
      };
    });
    const fake = { column_unix_ms: cols, rows, series: 'writes', generated_at: '', step_ms: step };
    await page.route('**/admin/api/v1/keyviz/matrix**', (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(fake) }));
    try {
      await matrixAfter(page, () => page.click('#refresh'));
      const r = await page.$$eval('#key-axis .key-label', (els) => {
        const axis = document.getElementById('key-axis').getBoundingClientRect();
        return els.map((e) => {
          const b = e.getBoundingClientRect();
          return { k: Number(e.dataset.row), text: e.textContent, inside: b.top >= axis.top - 0.5 && b.bottom <= axis.bottom + 0.5, clipped: e.scrollWidth > e.clientWidth, top: b.top, bottom: b.bottom };
        });
      });
      const top = r.find((l) => l.k === 0);
      assert.ok(top, 'the hot first row is labelled');
      assert.equal(top.text, 'hot:counter');
      assert.ok(top.inside && !top.clipped, `the top label is whole: ${JSON.stringify(top)}`);
      assert.ok(r.some((l) => l.k === 217), 'a busy row is labelled though it is not on the even stride');
      assert.ok(r.some((l) => l.k === 1), 'the busy row next to the hottest one is labelled too (moved to make room)');
      assert.ok(r.every((l) => l.inside && !l.clipped), 'no label is clipped');
      const sorted = [...r].sort((a, b) => a.top - b.top);
      for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i].top >= sorted[i - 1].bottom - 0.5, `labels ${sorted[i - 1].text} and ${sorted[i].text} do not overlap`);
    } finally {
      await page.unroute('**/admin/api/v1/keyviz/matrix**');
    }
    await matrixAfter(page, () => page.click('#refresh'));
  });

  test('clicking_a_cell_lists_its_top_keys_with_bounds_share_and_a_copy_button', async () => {
    const { body } = await matrixAfter(page, () => page.click('#refresh'));
    const k = body.rows.findIndex((r) => r.bucket_id === fx.hello.hot_key_route);
    const row = body.rows[k];
    const box = await page.locator('#plot').boundingBox();
    const { rows } = await viewOf();
    const hot = await hotKeysAfter(() => page.mouse.click(box.x + box.width * 0.4, box.y + ((k + 0.5) / rows) * box.height), (q) => q.get('key_start') !== null);
    assert.equal(hot.status, 200);
    assert.equal(hot.params.get('key_start'), row.start, 'the row\'s key range');
    assert.equal(hot.params.get('key_end'), row.end);
    const from = Number(hot.params.get('from_unix_ms'));
    const to = Number(hot.params.get('to_unix_ms'));
    assert.equal(to - from, body.step_ms, 'one column\'s window');
    assert.equal(from % body.step_ms, 0, 'aligned to the step');
    await panelReady();
    assert.equal(await page.getAttribute('#keys-panel', 'data-kind'), 'cell');
    const h = hot.body;
    assert.equal(text(h.keys[0].key), fx.hello.hot_key);
    // The exact total of the range and window is the matrix cell.
    const j = body.column_unix_ms.indexOf(from);
    if (j >= 0) assert.equal(h.total, row.values[j], 'total = the cell value');
    const first = await page.$$eval('#keys-body tr:first-child td', (tds) => tds.map((t) => t.textContent));
    assert.ok(first[1].includes(fx.hello.hot_key), first.join(' | '));
    const n = (v) => v.toLocaleString('en-US');
    const bounds = h.keys[0].lower === h.keys[0].upper ? `${n(h.keys[0].estimate)} (exact)` : `${n(h.keys[0].estimate)} (${n(h.keys[0].lower)}..${n(h.keys[0].upper)})`;
    assert.equal(first[2], bounds, 'estimate with lower..upper');
    assert.ok(h.keys[0].lower <= h.keys[0].estimate && h.keys[0].estimate <= h.keys[0].upper);
    assert.match(first[3], /^\d+(\.\d)? %$/);
    assert.ok(Math.abs(parseFloat(first[3]) - h.keys[0].share * 100) <= 0.5, `share ${first[3]} of ${h.keys[0].share}`);
    const panel = await page.textContent('#keys-panel');
    assert.ok(panel.includes(`Total in this range and window: ${n(h.total)} writes (exact)`), panel);
    assert.match(panel, h.floor > 0 ? new RegExp(`No other key here has more than ${n(h.floor)} writes`) : /these are all the keys of this range and window/);
    assert.match(panel, h.sampled ? /Sampled: / : /Not sampled: every true count lies between/);
    // Copy: the printable key is copied as text, and the button says so.
    assert.equal(await page.textContent('#keys-body tr:first-child button'), 'Copy');
    await page.click('#keys-body tr:first-child button');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), fx.hello.hot_key);
    assert.match(await page.textContent('#status'), /Copied key user:0022:counter/);
    await page.screenshot({ path: `${SCREENSHOTS}hotkeys.png`, fullPage: true });
    // The keyboard reaches the copy button; Close returns focus to the heatmap.
    await page.focus('#keys-close');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#keys-panel', { state: 'hidden' });
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'plot');
    await page.keyboard.press('Escape');
  });

  test('the_keyboard_pins_a_cell_and_opens_its_top_keys', async () => {
    await page.focus('#plot');
    await page.keyboard.press('ArrowDown');
    const hot = await hotKeysAfter(() => page.keyboard.press('Enter'), (q) => q.get('key_end') !== null || q.get('key_start') !== null);
    assert.equal(hot.status, 200);
    await panelReady();
    assert.equal(await page.isVisible('#keys-panel'), true);
    assert.match(await page.textContent('#keys-status'), /Top key: |No key to show/, 'the result is announced');
    await page.keyboard.press('Escape');
  });

  test('clicking_a_row_label_lists_the_rows_top_keys_over_the_whole_view', async () => {
    const { body } = await matrixAfter(page, () => page.click('#refresh'));
    const k = body.rows.findIndex((r) => r.bucket_id === fx.hello.hot_key_route);
    const axis = await page.locator('#key-axis').boundingBox();
    const { rows } = await viewOf();
    const hot = await hotKeysAfter(() => page.mouse.click(axis.x + axis.width - 30, axis.y + ((k + 0.5) / rows) * axis.height), (q) => q.get('key_start') !== null);
    assert.equal(hot.params.get('key_start'), body.rows[k].start);
    const span = Number(hot.params.get('to_unix_ms')) - Number(hot.params.get('from_unix_ms'));
    assert.ok(span >= 3600_000, `the view's window (${span} ms)`);
    await panelReady();
    assert.equal(await page.getAttribute('#keys-panel', 'data-kind'), 'row');
    assert.ok((await page.textContent('#keys-body tr:first-child')).includes(fx.hello.hot_key));
    assert.equal(await page.isVisible('#detail'), true, 'the row detail opens too');
    // The row total over the view is the exact total of the answer (within the one column a flush may add meanwhile).
    const rowTotal = body.rows[k].values.reduce((a, v) => a + v, 0);
    const maxCol = Math.max(...body.rows[k].values);
    assert.ok(Math.abs(hot.body.total - rowTotal) <= 2 * maxCol, `total ${hot.body.total} vs row ${rowTotal}`);
    // The hot list's row buttons open the same panel (the keyboard path to a row).
    await hotKeysAfter(() => page.click('#hot-list li:first-child button'), (q) => q.get('key_start') !== null || q.get('key_end') !== null);
    await panelReady();
    assert.equal(await page.getAttribute('#keys-panel', 'data-kind'), 'row');
  });

  test('a_binary_key_is_copied_as_base64_and_node_problems_and_sampling_are_explained', async () => {
    const bin = Buffer.from([0x00, 0xff, 0x10, 0x41]).toString('base64');
    const fake = {
      series: 'writes', mode: 'raw', keys: [
        { key: bin, preview: '0x00ff1041', estimate: 900, lower: 850, upper: 950, share: 0.45 },
        { key: Buffer.from('user:7').toString('base64'), preview: 'user:7', estimate: 100, lower: 60, upper: 140, share: 0.05, truncated: true },
      ],
      total: 2000, floor: 40, sampled: true, warnings: ['an input of mode hashed was left out'],
      fanout: { nodes: [
        { node: '127.0.0.1:1', node_id: 'n1', ok: true, elapsed_ms: 1, warnings: [] },
        { node: '127.0.0.1:2', node_id: 'n2', ok: false, error: 'hot keys disabled on this node', elapsed_ms: 1, warnings: [] },
      ], responded: 1, expected: 2 },
    };
    await page.route(`**${HOTKEYS}**`, (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(fake) }));
    try {
      await page.click('#hot-list li:first-child button');
      await panelReady();
      const panel = await page.textContent('#keys-panel');
      assert.match(panel, /850\.\.950/);
      assert.match(panel, /45 %/);
      assert.match(panel, /user:7 \(cut at 256 bytes\)/);
      assert.match(panel, /No other key here has more than 40 writes/);
      assert.match(panel, /Sampled: .*statistical bounds/);
      const problems = await page.textContent('#keys-problems');
      assert.match(problems, /127\.0\.0\.1:2 \(n2\): no hot keys — hot keys disabled on this node/);
      assert.match(problems, /an input of mode hashed was left out/);
      assert.equal(await page.textContent('#keys-body tr:first-child button'), 'Copy base64');
      await page.click('#keys-body tr:first-child button');
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), bin, 'a non-printable key is copied as base64');
      // An old server without the endpoint: the panel says so instead of staying empty.
      await page.unroute(`**${HOTKEYS}**`);
      await page.route(`**${HOTKEYS}**`, (route) => route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: 'not_found', message: 'no route' }) }));
      await page.click('#hot-list li:first-child button');
      await panelReady();
      assert.equal(await page.getAttribute('#keys-panel', 'data-state'), 'error');
      assert.match(await page.textContent('#keys-body'), /no hot-key API/);
    } finally {
      await page.unroute(`**${HOTKEYS}**`);
    }
  });

  test('a_stopped_node_is_named_in_the_hot_keys_problems', async () => {
    const n2 = fx.hello.nodes.find((n) => n.node_id === fx.hello.stoppable);
    await hotKeysAfter(() => page.click('#refresh'));
    await page.waitForFunction(() => document.getElementById('hotkeys-list')?.dataset.state === 'ready', null, { timeout: SLOW });
    assert.equal(await page.isVisible('#hotkeys-problems'), false, 'no problem while every node keeps hot keys');
    await fx.stopNode(n2.node_id);
    await waitFor(async () => {
      await hotKeysAfter(() => page.click('#refresh'));
      await page.waitForFunction(() => document.getElementById('hotkeys-list')?.dataset.state !== 'loading', null, { timeout: SLOW });
      return page.isVisible('#hotkeys-problems');
    }, 2 * SLOW, 'the hot-key problems list');
    const problems = await page.textContent('#hotkeys-problems');
    assert.ok(problems.includes(n2.addr) && problems.includes('n2'), problems);
    await settled(page);
  });
});
