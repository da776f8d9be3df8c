// End-to-end tests of the KeyViz web UI in headless Chromium against a real server: the
// ui_fixture example (three keyviz-admin routers with real samplers and synthetic traffic,
// one crafted peer that contradicts n1's writes for the same raft group and term).
// The tests share one fixture and one browser and run in order; the degraded-cluster test
// stops a node, so it runs last.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ensureScreenshotDir, launchBrowser, login, matrixAfter, rowIndices, rowLevel, SCREENSHOTS,
  settled, startFixture, waitFor, xFraction,
} from './harness.mjs';

/** @type {Awaited<ReturnType<typeof startFixture>>} */
let fx;
/** @type {import('playwright-core').Browser} */
let browser;
/** @type {import('playwright-core').BrowserContext} */
let context;
/** @type {import('playwright-core').Page} */
let page;

const bucket = (r) => `route:${r}`;
const inRange = (id, [lo, hi]) => {
  const m = /^route:(\d+)$/.exec(id);
  return m ? Number(m[1]) >= lo && Number(m[1]) < hi : false;
};

before(async () => {
  ensureScreenshotDir();
  fx = await startFixture();
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, colorScheme: 'light' });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: fx.entry });
  page = await context.newPage();
  page.on('pageerror', (e) => console.error('pageerror:', e.message));
});

after(async () => {
  await browser?.close();
  fx?.stop();
});

describe('KeyViz web UI', () => {
  test('login_rejects_a_wrong_secret_then_signs_in_and_shows_the_cluster_view', async () => {
    await page.goto(`${fx.entry}/admin/keyviz?series=writes&range=1h&rows=256`);
    await page.waitForSelector('#login-form:visible');
    await page.screenshot({ path: `${SCREENSHOTS}login.png` });
    await login(page, fx.hello, 'not-the-secret');
    await page.waitForFunction(() => document.getElementById('login-error')?.textContent?.includes('Invalid access key'));
    const { params } = await matrixAfter(page, () => login(page, fx.hello));
    assert.equal(params.get('series'), 'writes');
    assert.equal(await page.isVisible('#app-view'), true);
    assert.equal(await page.textContent('#cluster-status'), 'cluster view (3 of 3 nodes)');
    assert.equal(await page.isVisible('#banner'), false, 'no degraded banner while every node answers');
    assert.equal(await page.textContent('#role'), 'full access');
  });

  test('heatmap_draws_non_zero_pixels_on_the_hot_rows_and_zero_cells_apart', async () => {
    const { body } = await matrixAfter(page, () => page.click('#refresh'));
    const levels = (await rowIndices(page)).map(rowLevel);
    assert.equal(levels.length, body.rows.length, 'one drawn row per matrix row');
    const hot = body.rows.map((r, k) => (inRange(r.bucket_id, fx.hello.hot_routes) ? k : -1)).filter((k) => k >= 0);
    assert.equal(hot.length, 4, 'the four hot routes are rows');
    for (const k of hot) assert.ok(levels[k] > 200, `hot row ${body.rows[k].bucket_id} drawn near the top of the palette (got ${levels[k]})`);
    // route:5 only ever gets the diagonal sweep, so most of its cells are zero and drawn with the zero colour.
    const cold = body.rows.findIndex((r) => r.bucket_id === bucket(5));
    assert.equal(levels[cold], 0, 'a mostly idle row is drawn with the zero colour');
    const quiet = body.rows.findIndex((r) => r.bucket_id === bucket(1));
    assert.ok(levels[quiet] > 0 && levels[quiet] < 128, `a low but non-zero row is a palette colour, not the zero colour (got ${levels[quiet]})`);
    // Marginals: the busiest step's total over all rows, and the busiest row's total.
    const stepTotals = body.column_unix_ms.map((_, j) => body.rows.reduce((a, r) => a + r.values[j], 0));
    assert.equal(Number(await page.getAttribute('#time-marginal', 'data-max')), Math.max(...stepTotals));
    const rowTotals = body.rows.map((r) => r.values.reduce((a, v) => a + v, 0));
    assert.equal(Number(await page.getAttribute('#row-marginal', 'data-max')), Math.max(...rowTotals));
    await page.screenshot({ path: `${SCREENSHOTS}heatmap-light.png`, fullPage: true });
  });

  test('patterns_list_names_the_hot_range_and_the_sequential_sweep', async () => {
    const hot = await page.textContent('#findings li[data-kind="hot_range"]');
    assert.match(hot, /Hot key range: user:0020\S* … user:0023\S* carries \d+% of writes/);
    assert.match(await page.textContent('#findings li[data-kind="sequential"]'), /Sequential key pattern/);
    // The fixture's traffic is the same every step: no periodic burst is claimed.
    assert.equal(await page.locator('#findings li[data-kind="periodic"]').count(), 0, 'no periodic finding on steady traffic');
    const { params } = await matrixAfter(page, () => page.click('#findings li[data-kind="hot_range"] button'));
    assert.ok(params.get('to_unix_ms'), 'zooming to the range keeps an explicit window');
    assert.equal(await page.getAttribute('#plot', 'data-rows'), '4', 'only the hot range is drawn');
    await matrixAfter(page, () => page.click('#back'));
    assert.equal(await page.getAttribute('#plot', 'data-rows'), '65');
  });

  test('key_prefix_filter_shows_only_matching_ranges_and_back_undoes_it', async () => {
    await page.fill('#key-prefix', 'user:004');
    await matrixAfter(page, () => page.press('#key-prefix', 'Enter'));
    // [user:004, user:005) overlaps route 39 = [user:0039, user:0040) too: "user:004" itself
    // sorts before "user:0040".
    assert.equal(await page.getAttribute('#plot', 'data-rows'), '12', 'user:0039 … user:0049 (route 42 twice: the crafted peer reports it with another range)');
    assert.match(await page.textContent('#summary'), /keys user:004 → user:005/);
    const labels = await page.$$eval('#key-axis .key-label', (els) => els.map((e) => e.textContent));
    assert.ok(labels[0]?.startsWith('user:0039'), `the first label is whole: ${labels}`);
    // The others name user:004x keys, the common "user:" with the label above elided.
    assert.ok(labels.slice(1).every((l) => /^(user:|…)004/.test(l ?? '')), `labels ${labels}`);
    await page.fill('#key-prefix', '');
    await matrixAfter(page, () => page.click('#back'));
    assert.equal(await page.getAttribute('#plot', 'data-rows'), '65');
  });

  test('switching_series_changes_the_picture_and_the_query', async () => {
    const before = (await rowIndices(page)).map(rowLevel);
    const { params, body } = await matrixAfter(page, () => page.selectOption('#series', 'reads'));
    assert.equal(params.get('series'), 'reads');
    assert.equal(body.series, 'reads');
    const afterLevels = (await rowIndices(page)).map(rowLevel);
    assert.notDeepEqual(afterLevels, before);
    const readHot = body.rows.findIndex((r) => inRange(r.bucket_id, fx.hello.read_hot_routes));
    const writeHot = body.rows.findIndex((r) => inRange(r.bucket_id, fx.hello.hot_routes));
    assert.ok(afterLevels[readHot] > 200, 'read-hot rows light up under reads');
    assert.ok(afterLevels[readHot] > before[readHot], 'and were darker under writes');
    assert.ok(afterLevels[writeHot] < before[writeHot], 'write-hot rows dim under reads');
    assert.match(page.url(), /series=reads/);
    await matrixAfter(page, () => page.selectOption('#series', 'writes'));
  });

  test('hover_shows_the_cell_and_click_pins_it_and_opens_the_row_detail', async () => {
    // Measure after the refresh: the banners above the plot may change with the answer.
    const { body } = await matrixAfter(page, () => page.click('#refresh'));
    const box = await page.locator('#plot').boundingBox();
    const rows = Number(await page.getAttribute('#plot', 'data-rows'));
    const k = body.rows.findIndex((r) => r.bucket_id === bucket(22));
    const y = box.y + ((k + 0.5) / rows) * box.height;
    await page.mouse.move(box.x + box.width * 0.4, y);
    await page.waitForSelector('#tooltip:visible');
    const tip = await page.textContent('#tooltip');
    assert.match(tip, /Keys\s*user:0022 → user:0023/);
    assert.match(tip, /Value\s*\d[\d,]* writes/);
    assert.match(tip, /Raft group \/ term\s*group \d+, term \d+/);
    await page.screenshot({ path: `${SCREENSHOTS}overview.png` });
    await page.mouse.click(box.x + box.width * 0.4, y);
    await page.waitForSelector('#detail:visible');
    const detail = await page.textContent('#detail');
    assert.match(detail, /Bucket id\s*route:22/);
    assert.match(detail, /Start key\s*user:0022/);
    assert.match(await page.textContent('#tooltip'), /Pinned/);
    await page.click('#detail button[aria-label="Copy start key"]');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'user:0022');
    await page.screenshot({ path: `${SCREENSHOTS}detail.png`, fullPage: true });
    await page.keyboard.press('Escape');
    await page.waitForSelector('#tooltip', { state: 'hidden' });
    // Pin again, then release by clicking outside the plot and the detail panel. (The copy
    // button scrolled the page: measure the plot again.)
    await page.locator('#plot').scrollIntoViewIfNeeded();
    const again = await page.locator('#plot').boundingBox();
    await page.mouse.click(again.x + again.width * 0.4, again.y + ((k + 0.5) / rows) * again.height);
    await page.waitForSelector('#tooltip:visible');
    await page.click('#summary');
    await page.waitForSelector('#tooltip', { state: 'hidden' });
  });

  test('conflict_hatching_marks_the_cells_the_crafted_peer_contradicts', async () => {
    const { body } = await matrixAfter(page, () => page.click('#refresh'));
    const k = body.rows.findIndex((r) => r.bucket_id === fx.hello.conflict_bucket);
    assert.ok(k >= 0 && body.rows[k].conflict === true, 'the server flags the crafted row');
    assert.ok(body.rows.every((r, i) => i === k || !r.conflict), 'and no other row');
    // The crafted peer also misreports a bucket's key range: listed as a warning by node.
    assert.equal(await page.isVisible('#warnings'), true, 'the warnings list is shown');
    const warnings = await page.textContent('#warnings');
    assert.match(warnings, /catalog_divergence/);
    assert.ok(warnings.includes(fx.hello.divergent_bucket) && warnings.includes('(n3)'), `names the bucket and the node: ${warnings}`);
    const flagged = body.rows[k].conflicts.filter(Boolean).length;
    const hatched = Number(await page.getAttribute('#hatch', 'data-conflict-cells'));
    assert.equal(hatched, flagged, 'every flagged cell is hatched');
    assert.equal(await page.getAttribute('#hatch', 'data-conflict-rows'), '1');
    // Hatch pixels lie on the conflicting row only.
    const painted = await page.evaluate((k) => {
      const c = /** @type {HTMLCanvasElement} */ (document.getElementById('hatch'));
      const rows = Number(document.getElementById('plot')?.dataset.rows);
      const d = c.getContext('2d')?.getImageData(0, 0, c.width, c.height).data ?? new Uint8ClampedArray();
      const count = (row) => {
        let n = 0;
        const y0 = Math.ceil((row / rows) * c.height) + 1;
        const y1 = Math.floor(((row + 1) / rows) * c.height) - 1;
        for (let y = y0; y <= y1; y++) for (let x = 0; x < c.width; x++) if (d[(y * c.width + x) * 4 + 3] > 0) n++;
        return n;
      };
      return { mine: count(k), above: count(k - 3), below: count(k + 3) };
    }, k);
    assert.ok(painted.mine > 0, 'hatching drawn on the conflicting row');
    assert.equal(painted.above + painted.below, 0, 'no hatching on clean rows');
    // The tooltip of a conflicting cell says so.
    const j = body.rows[k].conflicts.findIndex(Boolean);
    const cols = body.column_unix_ms;
    const step = body.step_ms;
    const view = await page.evaluate(() => document.getElementById('summary')?.textContent);
    assert.ok(view);
    const box = await page.locator('#plot').boundingBox();
    const rows = Number(await page.getAttribute('#plot', 'data-rows'));
    const from = cols[0];
    // Column j's slot centre relative to the drawn domain: find it from the plot's own axis by
    // hovering the column start and checking the tooltip; the domain starts at or before cols[0].
    for (let dx = 0; dx < 40; dx++) {
      const frac = await xFraction(page, (cols[j + dx * 5] ?? from) + step / 2);
      if (frac == null || frac > 0.98) break;
      await page.mouse.move(box.x + frac * box.width, box.y + ((k + 0.5) / rows) * box.height);
      const tip = await page.textContent('#tooltip');
      if (/Conflict\s*yes/.test(tip ?? '')) return;
    }
    assert.fail('no hovered conflicting cell reported a conflict in the tooltip');
  });

  test('leader_changes_are_marked_where_the_term_moves', async () => {
    const { body } = await matrixAfter(page, () => page.click('#refresh'));
    const { group, at_unix_ms: at } = fx.hello.leader_change;
    const j = body.column_unix_ms.indexOf(at);
    assert.ok(j > 0, 'the change happened inside the hour');
    // Rows of the group seen led both before and after the change get one marker each.
    const seen = (r, before) => r.raft_group_ids.some((g, i) => g === group && r.leader_terms[i] > 0 && (before ? i < j : i >= j));
    const rowsOfGroup = body.rows.filter((r) => seen(r, true) && seen(r, false));
    assert.ok(rowsOfGroup.length > 0);
    const dense = rowsOfGroup.filter((r) => r.leader_terms[j - 1] > 0 && r.leader_terms[j] > 0);
    assert.ok(dense.length > 0);
    for (const r of dense) assert.equal(r.leader_terms[j], r.leader_terms[j - 1] + 1, `${r.bucket_id}: term steps up at the change`);
    assert.equal(Number(await page.getAttribute('#hatch', 'data-leader-changes')), rowsOfGroup.length, 'one marker per row of the group');
    rowsOfGroup.splice(0, rowsOfGroup.length, ...dense);
    // The tooltip of the cell right after the change says so.
    const k = body.rows.indexOf(rowsOfGroup[0]);
    const box = await page.locator('#plot').boundingBox();
    const rows = Number(await page.getAttribute('#plot', 'data-rows'));
    const frac = await xFraction(page, at + body.step_ms / 2);
    await page.mouse.move(box.x + frac * box.width, box.y + ((k + 0.5) / rows) * box.height);
    const tip = await page.textContent('#tooltip');
    assert.match(tip, /leader changed: group \d+: term \d+ → \d+/, tip);
    await page.mouse.move(0, 0);
  });

  test('leader_changes_name_the_node_that_took_over_and_the_one_it_replaced', async () => {
    const { body } = await matrixAfter(page, () => page.click('#refresh'));
    const lc = fx.hello.leader_change;
    // The server names the leader of every write identity the cells carry, the two terms of
    // the change included.
    const named = new Map((body.leaders ?? []).map((l) => [`${l.group}:${l.term}`, l.node_id]));
    const ids = new Set();
    for (const r of body.rows) {
      r.raft_group_ids.forEach((g, i) => { if (g && r.leader_terms[i]) ids.add(`${g}:${r.leader_terms[i]}`); });
    }
    assert.ok(ids.size >= 4, [...ids].join(' '));
    for (const id of ids) assert.ok(named.has(id), `identity ${id} has no leader: ${JSON.stringify(body.leaders)}`);
    assert.equal(named.get(`${lc.group}:${lc.from_term}`), lc.was);
    assert.equal(named.get(`${lc.group}:${lc.to_term}`), lc.leader);
    // The lane under the time axis has one tick for the change, at its column, labelled with
    // the node that took over; its hover text and the sentence under the plot name both.
    const lane = page.locator('#leader-lane');
    assert.equal(await lane.isVisible(), true);
    assert.equal(await lane.getAttribute('data-changes'), '1', 'one change (rows of the group change together)');
    const tick = lane.locator('.leader-tick');
    assert.equal(await tick.getAttribute('data-leader'), lc.leader);
    assert.equal(await tick.getAttribute('data-was'), lc.was);
    const sentence = `group ${lc.group}: term ${lc.from_term} → ${lc.to_term}, leader ${lc.leader} (was ${lc.was})`;
    assert.ok((await tick.getAttribute('title')).includes(sentence), await tick.getAttribute('title'));
    assert.equal(await lane.locator('.leader-label').first().textContent(), `g${lc.group} → ${lc.leader}`);
    assert.ok((await page.textContent('#leader-note')).includes(sentence), await page.textContent('#leader-note'));
    const laneBox = await lane.boundingBox();
    const tickBox = await tick.boundingBox();
    const plotBox = await page.locator('#plot').boundingBox();
    const frac = await xFraction(page, lc.at_unix_ms);
    assert.ok(Math.abs((tickBox.x + tickBox.width / 2 - plotBox.x) / plotBox.width - frac) < 0.02, 'the tick sits at the change on the time axis');
    assert.ok(laneBox.y >= plotBox.y + plotBox.height, 'the lane is under the plot');
    // The cell tooltip right after the change says who took over from whom.
    const k = body.rows.findIndex((r) => {
      const j = body.column_unix_ms.indexOf(lc.at_unix_ms);
      return r.raft_group_ids[j] === lc.group && r.leader_terms[j] === lc.to_term && r.leader_terms[j - 1] === lc.from_term;
    });
    assert.ok(k >= 0);
    const rows = Number(await page.getAttribute('#plot', 'data-rows'));
    const cellFrac = await xFraction(page, lc.at_unix_ms + body.step_ms / 2);
    await page.mouse.move(plotBox.x + cellFrac * plotBox.width, plotBox.y + ((k + 0.5) / rows) * plotBox.height);
    const tip = await page.textContent('#tooltip');
    assert.ok(tip.includes(`leader changed: ${sentence}`), tip);
    await page.screenshot({ path: `${SCREENSHOTS}leaders.png` });
    // A later cell names its term's leader.
    const laterFrac = await xFraction(page, lc.at_unix_ms + body.step_ms * 3.5);
    await page.mouse.move(plotBox.x + laterFrac * plotBox.width, plotBox.y + ((k + 0.5) / rows) * plotBox.height);
    assert.ok((await page.textContent('#tooltip')).includes(`term ${lc.to_term}, led by ${lc.leader}`));
    await page.mouse.move(0, 0);
  });

  test('brush_zoom_requeries_a_finer_window_and_key_range_and_back_restores', async () => {
    await page.mouse.move(0, 0);
    const box = await page.locator('#plot').boundingBox();
    const before = new URL(page.url()).searchParams;
    const rowsBefore = Number(await page.getAttribute('#plot', 'data-rows'));
    const { params, body } = await matrixAfter(page, async () => {
      await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.25);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.4, { steps: 5 });
      await page.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.5, { steps: 5 });
      await page.mouse.up();
    });
    const from = Number(params.get('from_unix_ms'));
    const to = Number(params.get('to_unix_ms'));
    assert.ok(to > from, 'the zoomed query carries an explicit window');
    const span = to - from;
    assert.ok(span > 0.2 * 3600_000 && span < 0.4 * 3600_000, `about 30% of the hour is requested (got ${span} ms)`);
    assert.ok(body.column_unix_ms.every((t) => t >= from - body.step_ms && t < to), 'the answer holds only the zoomed window');
    const url = new URL(page.url()).searchParams;
    assert.equal(url.get('range'), 'custom');
    assert.ok(url.has('kstart') && url.has('kend'), 'the key range is part of the view');
    // The key range goes to the server: key_start = first brushed row's start, key_end = last
    // brushed row's end (the brush starts a quarter down, so neither bound is open).
    const keyStart = params.get('key_start');
    const keyEnd = params.get('key_end');
    assert.ok(keyStart && keyEnd, `the zoom request carries the key range (${params})`);
    assert.equal(keyStart, url.get('kstart'), 'key_start is the permalink key start');
    assert.equal(keyEnd, url.get('kend'), 'key_end is the permalink key end');
    const ks = Buffer.from(keyStart, 'base64');
    const ke = Buffer.from(keyEnd, 'base64');
    assert.ok(Buffer.compare(ks, ke) < 0, 'key_start < key_end');
    const outside = body.rows.filter((r) => {
      const start = Buffer.from(r.start ?? '', 'base64');
      const endsAfterStart = r.end == null || Buffer.compare(Buffer.from(r.end, 'base64'), ks) > 0;
      return !(endsAfterStart && Buffer.compare(start, ke) < 0);
    });
    assert.deepEqual(outside.map((r) => r.bucket_id), [], 'the server answered only rows overlapping [key_start, key_end)');
    assert.ok(body.rows.length > 5 && body.rows.length < rowsBefore, `the server narrowed the rows (${body.rows.length} of ${rowsBefore})`);
    const shown = Number(await page.getAttribute('#plot', 'data-rows'));
    assert.equal(shown, body.rows.length, 'every answered row is in the brushed key range and drawn');
    assert.match(await page.textContent('#summary'), / · keys \S.* → \S/, 'the summary names the key range');
    // Wheel zoom on time re-queries a narrower window around the cursor.
    const wheel = await matrixAfter(page, async () => {
      await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
      await page.mouse.wheel(0, -100);
    });
    const wspan = Number(wheel.params.get('to_unix_ms')) - Number(wheel.params.get('from_unix_ms'));
    assert.ok(wspan < span && wspan > 0.6 * span, `wheel zoomed in (${wspan} < ${span})`);
    assert.equal(wheel.params.get('key_start'), keyStart, 'a time zoom keeps the key range');
    assert.equal(wheel.params.get('key_end'), keyEnd);
    // Back twice returns to the preset hour.
    await matrixAfter(page, () => page.click('#back'));
    const back = await matrixAfter(page, () => page.click('#back'));
    assert.equal(new URL(page.url()).searchParams.get('range'), before.get('range'));
    assert.equal(back.params.get('to_unix_ms'), null, 'the preset window is open-ended again');
    assert.equal(back.params.get('key_start'), null, 'back drops the key range');
    assert.equal(back.params.get('key_end'), null);
    assert.equal(Number(await page.getAttribute('#plot', 'data-rows')), back.body.rows.length);
    assert.ok(back.body.rows.length > body.rows.length, 'all keys are answered again');
    // Reset clears the key range too: from the request, the permalink and the summary.
    await matrixAfter(page, async () => {
      await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.25);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.5, { steps: 8 });
      await page.mouse.up();
    });
    const reset = await matrixAfter(page, () => page.click('#reset'));
    assert.equal(reset.params.get('key_start'), null, 'reset drops key_start');
    assert.equal(reset.params.get('key_end'), null, 'reset drops key_end');
    const afterReset = new URL(page.url()).searchParams;
    assert.ok(!afterReset.has('kstart') && !afterReset.has('kend'), 'the permalink has no key range');
    assert.doesNotMatch(await page.textContent('#summary'), / · keys /);
    assert.equal(Number(await page.getAttribute('#plot', 'data-rows')), reset.body.rows.length);
    assert.ok(reset.body.rows.length > body.rows.length, 'all keys are answered again');
  });

  test('a_permalink_restores_the_same_view_in_a_new_tab', async () => {
    await matrixAfter(page, () => page.selectOption('#series', 'write_bytes'));
    await page.selectOption('#scale', 'linear');
    await page.selectOption('#palette', 'viridis');
    await page.fill('#rows', '48');
    await matrixAfter(page, () => page.press('#rows', 'Enter'));
    const box = await page.locator('#plot').boundingBox();
    const zoom = await matrixAfter(page, async () => {
      await page.mouse.move(box.x + box.width * 0.1, box.y + box.height * 0.1);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.8, { steps: 8 });
      await page.mouse.up();
    });
    const link = page.url();
    const original = await rowIndices(page, 64);
    const tab = await context.newPage();
    const [req] = await Promise.all([
      tab.waitForRequest((r) => r.url().includes('/keyviz/matrix')),
      tab.goto(link),
    ]);
    const res = await req.response();
    await settled(tab);
    const params = new URL(res.url()).searchParams;
    for (const k of ['series', 'from_unix_ms', 'to_unix_ms', 'key_start', 'key_end']) assert.equal(params.get(k), zoom.params.get(k), `${k} restored`);
    assert.equal(await tab.inputValue('#series'), 'write_bytes');
    assert.equal(await tab.inputValue('#scale'), 'linear');
    assert.equal(await tab.inputValue('#palette'), 'viridis');
    assert.equal(await tab.inputValue('#range'), 'custom');
    assert.equal(await tab.textContent('#summary'), await page.textContent('#summary'));
    assert.deepEqual(await rowIndices(tab, 64), original, 'the same cells are drawn with the same colours');
    await tab.close();
    await page.goto(`${fx.entry}/admin/keyviz?series=writes&range=1h&rows=256`);
    await settled(page);
  });

  test('keyboard_only_navigation_reaches_every_control_with_visible_focus', async () => {
    const controls = ['series', 'range', 'rows', 'auto', 'live', 'scale', 'bright-down', 'bright-up', 'palette', 'key-prefix', 'key-apply', 'refresh', 'fit', 'back', 'reset',
      'copy-link', 'copy-live-link', 'export-png', 'export-csv', 'plot', 'logout'];
    await page.evaluate(() => /** @type {HTMLElement} */ (document.activeElement)?.blur());
    const reached = new Set();
    const unstyled = [];
    for (let i = 0; i < 80 && reached.size < controls.length; i++) {
      await page.keyboard.press('Tab');
      const f = await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return null;
        const s = getComputedStyle(el);
        const label = el.id ? document.querySelector(`label[for="${el.id}"]`)?.textContent ?? el.getAttribute('aria-label') ?? el.textContent : '';
        return { id: el.id, outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0, label: (label ?? '').trim() };
      });
      if (!f || !controls.includes(f.id)) continue;
      reached.add(f.id);
      if (!f.outline) unstyled.push(f.id);
      assert.ok(f.label.length > 0, `#${f.id} has a label`);
    }
    assert.deepEqual([...controls].filter((c) => !reached.has(c)), [], 'every control is reachable with Tab');
    assert.deepEqual(unstyled, [], 'every focused control shows a focus outline');
    // The heatmap itself works from the keyboard: move the cursor, pin, zoom.
    await page.focus('#plot');
    await page.keyboard.press('ArrowDown');
    await page.waitForSelector('#tooltip:visible');
    assert.match(await page.textContent('#cell-announcer'), /→ .*: \d[\d,]* writes|no data/, 'the cursor cell is announced to screen readers');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#detail:visible');
    const { params } = await matrixAfter(page, () => page.keyboard.press('+'));
    assert.ok(params.get('to_unix_ms'), 'keyboard zoom issues a windowed query');
    await matrixAfter(page, () => page.keyboard.press('r'));
  });

  test('dark_scheme_renders_with_its_own_zero_colour', async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.waitForFunction(() => getComputedStyle(document.body).backgroundColor === 'rgb(15, 17, 21)');
    await matrixAfter(page, () => page.click('#refresh'));
    const levels = (await rowIndices(page)).map(rowLevel);
    assert.ok(levels.some((l) => l > 200) && levels.some((l) => l === 0), `hot and zero cells both recognised with the dark palette table: ${levels} ${page.url()}`);
    await page.screenshot({ path: `${SCREENSHOTS}heatmap-dark.png`, fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });
  });

  test('hidpi_canvas_has_device_pixels_and_only_exact_palette_colours', async () => {
    const hi = await browser.newContext({ viewport: { width: 1400, height: 1000 }, deviceScaleFactor: 2 });
    try {
      const tab = await hi.newPage();
      await tab.goto(`${fx.entry}/admin/keyviz?series=writes&range=1h&rows=256`);
      await matrixAfter(tab, () => login(tab, fx.hello));
      const r = await tab.evaluate(async () => {
        const scales = await import('/admin/assets/js/scales.js');
        const c = /** @type {HTMLCanvasElement} */ (document.getElementById('heatmap'));
        const css = getComputedStyle(document.documentElement);
        const rgb = (name) => {
          const h = css.getPropertyValue(name).trim().slice(1);
          return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
        };
        const lut = scales.buildLut('heat', rgb('--cell-zero'), rgb('--cell-nodata'));
        const allowed = new Set(Array.from(lut, (v) => v & 0xffffff));
        const d = c.getContext('2d')?.getImageData(0, 0, c.width, c.height).data ?? new Uint8ClampedArray();
        let foreign = 0;
        // Every 7th pixel of the whole canvas: with smoothing off, no blended colours exist.
        for (let p = 0; p < d.length; p += 28) {
          const v = d[p] | (d[p + 1] << 8) | (d[p + 2] << 16);
          if (!allowed.has(v)) foreign++;
        }
        return { w: c.width, h: c.height, cssW: parseFloat(c.style.width), cssH: parseFloat(c.style.height), foreign };
      });
      assert.equal(r.w, Math.round(r.cssW * 2), 'backing store is 2x the CSS width');
      assert.equal(r.h, Math.round(r.cssH * 2), 'and 2x the CSS height');
      assert.equal(r.foreign, 0, 'every sampled pixel is exactly a palette, zero or no-data colour');
    } finally {
      await hi.close();
    }
  });

  test('session_expiry_returns_to_login_and_then_back_to_the_same_view', async () => {
    await matrixAfter(page, () => page.selectOption('#series', 'reads'));
    const view = page.url();
    await context.clearCookies();
    // A background request of the last load (hot keys, nodes) may meet the 401 first and bring
    // the form back before the click: press Refresh through the DOM either way.
    await page.evaluate(() => document.getElementById('refresh')?.click());
    await page.waitForSelector('#login-form:visible');
    assert.match(await page.textContent('#login-reason'), /session expired/i);
    assert.equal(page.url(), view, 'the URL (the view) is kept while signed out');
    const { params } = await matrixAfter(page, () => login(page, fx.hello));
    assert.equal(params.get('series'), 'reads', 'back on the same view after signing in');
    assert.equal(page.url(), view);
    // The page also leaves on its own when the session's expires_at passes (no request needed).
    await page.evaluate(() => sessionStorage.setItem('keyviz-admin.session.v1', JSON.stringify({ role: 'full', expires_at: new Date(Date.now() + 2500).toISOString() })));
    await page.reload();
    await settled(page);
    await page.waitForSelector('#login-form:visible', { timeout: 10_000 });
    assert.match(await page.textContent('#login-reason'), /session expired/i);
    await matrixAfter(page, () => login(page, fx.hello));
    assert.equal(page.url(), view);
  });

  test('live_mode_appends_new_columns_without_reallocating_the_canvas', async () => {
    await matrixAfter(page, () => page.click('#refresh'));
    const stats = () => page.evaluate(async () => ({ ...(await import('/admin/assets/js/render/heatmap.js')).renderStats, rows: document.getElementById('plot')?.dataset.rows, summary: document.getElementById('summary')?.textContent, w: document.getElementById('plot')?.clientWidth }));
    const before = await stats();
    const firstCols = await page.evaluate(() => document.getElementById('summary')?.textContent);
    await page.check('#live');
    assert.match(page.url(), /live=1/);
    // The first tick after the server flushes a new column asks only for columns after the
    // last one we have (open-ended), and the picture keeps its size and buffers.
    const step = fx.hello.step_ms;
    let appended = null;
    const deadline = Date.now() + 4 * step + 10_000;
    while (!appended && Date.now() < deadline) {
      const res = await page.waitForResponse((r) => r.url().includes('/keyviz/matrix'), { timeout: 4 * step + 10_000 });
      const q = new URL(res.url()).searchParams;
      const body = await res.json();
      if (q.get('to_unix_ms') === null && body.column_unix_ms.length >= 2 && body.column_unix_ms.length <= 4) appended = { q, body };
    }
    assert.ok(appended, 'a live tick fetched only the newest columns');
    await settled(page);
    await page.waitForFunction((t) => document.getElementById('summary')?.textContent !== t, firstCols);
    const after = await stats();
    assert.equal(after.bufferAllocations, before.bufferAllocations, `no new offscreen buffer on a live tick ${JSON.stringify({ before, after })}`);
    assert.equal(after.canvasResizes, before.canvasResizes, 'the visible canvas keeps its backing store');
    await page.uncheck('#live');
  });

  test('export_csv_downloads_the_displayed_cells', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
    const path = await download.path();
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(path, 'utf8');
    const lines = text.trim().split('\n');
    const rows = Number(await page.getAttribute('#plot', 'data-rows'));
    assert.equal(lines.length, rows + 1, 'a header plus one line per displayed row');
    assert.match(lines[0], /^bucket_id,label,start_hex,end_hex,aggregate,route_count,total,\d{4}-/);
    const [png] = await Promise.all([page.waitForEvent('download'), page.click('#export-png')]);
    const file = await readFile(await png.path());
    assert.deepEqual([...file.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG file');
    const canvas = await page.evaluate(() => {
      const c = /** @type {HTMLCanvasElement} */ (document.getElementById('heatmap'));
      return { w: c.width, h: c.height };
    });
    const width = file.readUInt32BE(16);
    const height = file.readUInt32BE(20);
    assert.ok(width > canvas.w && height > canvas.h, `the export adds axes and a caption around the heatmap (${width}x${height} vs ${canvas.w}x${canvas.h})`);
    await png.saveAs(`${SCREENSHOTS}export.png`);
  });

  test('sign_out_sends_the_csrf_header_and_ends_the_session', async () => {
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/admin/api/v1/auth/logout')),
      page.click('#logout'),
    ]);
    assert.equal(res.status(), 204, 'the server accepted the logout (CSRF header echoed from the admin_csrf cookie)');
    assert.ok(res.request().headers()['x-admin-csrf'], 'X-Admin-CSRF was sent');
    await page.waitForSelector('#login-form:visible');
    assert.equal(await page.textContent('#login-reason'), 'Signed out.');
    const status = await page.evaluate(async () => (await fetch('/admin/api/v1/keyviz/matrix')).status);
    assert.equal(status, 401, 'the session is gone');
    await matrixAfter(page, () => login(page, fx.hello));
  });

  test('server_errors_and_malformed_answers_say_what_to_do_and_keep_the_picture', async () => {
    // Real answers are healthy here, so these two are injected at the network layer.
    const answers = [
      { status: 503, body: { error: 'keyviz_disabled', message: 'key visualizer sampler is not configured on this node' }, expect: /KeyViz is not available on this node \(keyviz_disabled: .*\)\. Enable the sampler/ },
      { status: 200, body: { column_unix_ms: [1, 2], rows: [{ bucket_id: 'route:1', start: null, end: null, aggregate: false, route_count: 1, values: [1] }], series: 'writes', generated_at: '' }, expect: /invalid_matrix: row route:1 has 1 values for 2 columns/ },
    ];
    for (const a of answers) {
      await page.route('**/admin/api/v1/keyviz/matrix**', (route) => route.fulfill({ status: a.status, contentType: 'application/json', body: JSON.stringify(a.body) }));
      await page.click('#refresh');
      await page.waitForFunction(() => document.body.dataset.state === 'error');
      assert.match(await page.textContent('#status'), a.expect);
      assert.equal(await page.isVisible('#empty'), false, 'the last good picture stays');
      await page.unroute('**/admin/api/v1/keyviz/matrix**');
    }
    await matrixAfter(page, () => page.click('#refresh'));
    assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready');
  });

  test('an_empty_window_says_what_is_going_on_and_what_to_do', async () => {
    const to = Date.now() - 20 * 3600_000;
    await page.goto(`${fx.entry}/admin/keyviz?series=writes&range=custom&from=${to - 600_000}&to=${to}&rows=256`);
    await settled(page);
    assert.equal(await page.evaluate(() => document.body.dataset.state), 'empty');
    assert.match(await page.textContent('#empty'), /No key range has traffic in this window\. Drive some traffic, choose a longer time range/);
    await page.goto(`${fx.entry}/admin/keyviz?series=writes&range=1h&rows=256`);
    await settled(page);
  });

  test('degraded_banner_names_the_stopped_node_and_its_error', async () => {
    const n2 = fx.hello.nodes.find((n) => n.node_id === fx.hello.stoppable);
    await fx.stopNode(n2.node_id);
    await waitFor(async () => {
      await matrixAfter(page, () => page.click('#refresh'));
      return page.isVisible('#banner');
    }, 20_000, 'the degraded banner');
    const banner = await page.textContent('#banner');
    assert.match(banner, /Degraded: 1 of 3 nodes did not answer/);
    assert.ok(banner.includes(n2.addr), `the banner names ${n2.addr}`);
    assert.ok(banner.includes('n2'), 'and its node id');
    assert.equal(await page.textContent('#cluster-status'), 'cluster view (2 of 3 nodes)');
    // Polled on a timer, not on animation frames: the members table changes without any frame
    // being drawn, and a page that draws nothing may get no animation frames at all.
    await page.waitForFunction((addr) => [...document.querySelectorAll('#nodes-body tr.bad')].some((tr) => tr.textContent?.includes(addr)), n2.addr, { polling: 250, timeout: 20_000 });
    await page.screenshot({ path: `${SCREENSHOTS}degraded.png` });
    // With the entry node itself gone, the page keeps the last picture and says what to do.
    await fx.stopNode(fx.hello.nodes[0].node_id);
    await page.click('#refresh');
    await page.waitForFunction(() => document.body.dataset.state === 'error');
    assert.match(await page.textContent('#status'), /did not answer\. Check that the node is running/);
    assert.equal(await page.isVisible('#heatmap'), true, 'the last heatmap stays on screen');
    assert.equal(await page.isVisible('#empty'), false);
  });
});
