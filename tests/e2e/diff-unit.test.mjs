// Unit tests of diff mode's and the snapshot's pure parts (no DOM), run by node directly: the
// diverging scale, the baseline windows, the URL round trip of the diff state, the row picture,
// and the snapshot document's escaping and self-containment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  baselineOf, cellChange, DAY_MS, diffColour, diffIndex, diffPicture, formatDelta, formatRatio, MAX_STOPS, scaleStops,
} from '../../crates/keyviz-admin/ui/js/diff.js';
import { defaultState, parseQuery, toQuery } from '../../crates/keyviz-admin/ui/js/state.js';
import { buildView } from '../../crates/keyviz-admin/ui/js/view.js';
import { esc, snapshotHtml } from '../../crates/keyviz-admin/ui/js/snapshot.js';

const b64 = (s) => Buffer.from(s).toString('base64');
const row = (id, start, end, values) => ({ bucket_id: id, start: start == null ? null : b64(start), end: end == null ? null : b64(end), aggregate: false, route_count: 1, values });

test('the_diverging_scale_is_white_at_no_change_blue_below_and_orange_above', () => {
  assert.deepEqual(diffColour(0.5), [247, 247, 247]);
  const [lr, , lb] = diffColour(0);
  const [hr, , hb] = diffColour(1);
  assert.ok(lb > lr, 'the low end is blue');
  assert.ok(hr > hb, 'the high end is orange');
  // Lightness falls monotonically from the centre out on both sides (order survives greyscale).
  const lum = (t) => { const [r, g, b] = diffColour(t); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  for (let t = 0.5; t < 1; t += 0.05) assert.ok(lum(t + 0.05) <= lum(t) + 1e-9, `darker above ${t}`);
  for (let t = 0.5; t > 0; t -= 0.05) assert.ok(lum(t - 0.05) <= lum(t) + 1e-9, `darker below ${t}`);
});

test('a_change_maps_to_its_log2_ratio_with_new_and_gone_at_the_ends', () => {
  assert.equal(diffIndex(0, 0, 3), 0, 'nothing in either window');
  assert.equal(diffIndex(5, 0, 3), 254, 'new traffic');
  assert.equal(diffIndex(0, 5, 3), 1, 'gone');
  const same = diffIndex(100, 100, 3);
  assert.ok(same === 127 || same === 128, `no change is the centre (${same})`);
  assert.ok(diffIndex(200, 100, 1) === 254 && diffIndex(50, 100, 1) === 1, '×2 and ÷2 are the ends of a ±1 scale');
  assert.ok(diffIndex(1000, 1, 3) === 254, 'beyond the scale clamps');
  assert.equal(scaleStops([0.2, -0.4]), 1);
  assert.equal(scaleStops([2.5, -1]), 3);
  assert.equal(scaleStops([40]), MAX_STOPS);
  assert.equal(scaleStops([NaN, Infinity]), 1);
});

test('baselines_are_the_previous_window_the_day_before_or_the_custom_one', () => {
  const w = { from: 10_000_000, to: 10_600_000 };
  const s = defaultState();
  assert.equal(baselineOf(s, w), null, 'off');
  assert.deepEqual(baselineOf({ ...s, diff: 'prev' }, w), { from: 9_400_000, to: 10_000_000 });
  assert.deepEqual(baselineOf({ ...s, diff: 'day' }, w), { from: 10_000_000 - DAY_MS, to: 10_600_000 - DAY_MS });
  assert.deepEqual(baselineOf({ ...s, diff: 'custom', bfrom: 5, bto: 9 }, w), { from: 5, to: 9 });
  assert.equal(baselineOf({ ...s, diff: 'custom', bfrom: 9, bto: 5 }, w), null, 'a reversed custom window is no baseline');
});

test('the_diff_state_round_trips_through_the_url_and_bad_values_fall_back', () => {
  for (const st of [
    { ...defaultState(), diff: 'prev' },
    { ...defaultState(), diff: 'day', range: 'custom', from: 1000, to: 5000 },
    { ...defaultState(), diff: 'custom', bfrom: 100, bto: 900 },
  ]) assert.deepEqual(parseQuery(toQuery(/** @type {any} */ (st))), st);
  assert.equal(parseQuery('diff=weekly').diff, 'off');
  assert.equal(parseQuery('diff=custom&bfrom=9&bto=5').diff, 'off', 'a reversed custom baseline is dropped');
  assert.equal(parseQuery('diff=custom&bfrom=x&bto=5').diff, 'off');
  assert.doesNotMatch(toQuery(defaultState()), /diff|bfrom|bto/, 'off leaves the URL as it was');
});

test('rows_are_coloured_by_the_servers_ratio_and_uncovered_rows_as_no_data', () => {
  const m = {
    series: 'writes', step_ms: 1000, generated_at: '', column_unix_ms: [0, 1000, 2000, 3000],
    rows: [row('a', null, 'b', [10, 10, 10, 10]), row('b', 'b', 'c', [1, 1, 1, 1]), row('c', 'c', null, [5, 5, 5, 5])],
  };
  const view = buildView(/** @type {any} */ (m), { from: 0, to: 4000 }, null, 4);
  const cmp = {
    baseline_from_unix_ms: -4000, baseline_to_unix_ms: 0, current_span_ms: 4000, scale: 1, current_total: 64, baseline_total: 24, baseline_unmatched: 0,
    rows: [
      { bucket_id: 'a', current: 40, baseline: 10, delta: 30, ratio: 4 },
      { bucket_id: 'b', current: 4, baseline: 16, delta: -12, ratio: 0.25 },
    ],
  };
  const pic = diffPicture(view, /** @type {any} */ (cmp));
  assert.equal(pic.stops, 2, '×4 and ÷4 need ±2 powers of two');
  const rowOf = (id) => view.rowIndex.findIndex((ri) => m.rows[ri].bucket_id === id);
  const at = (id) => [...pic.idx.slice(rowOf(id) * view.slots, (rowOf(id) + 1) * view.slots)];
  assert.ok(at('a').every((i) => i === 254), 'a grew ×4: the orange end');
  assert.ok(at('b').every((i) => i === 1), 'b shrank ÷4: the blue end');
  assert.ok(at('c').every((i) => i === 255), 'c has no comparison: no data');
  assert.deepEqual([pic.more, pic.less, pic.uncovered], [1, 1, 1]);
  const c = cellChange(10, 1000, cmp.rows[0], 4000);
  assert.deepEqual(c, { expected: 2.5, delta: 7.5, ratio: 4 });
});

test('ratios_and_deltas_read_as_operators_expect', () => {
  assert.equal(formatRatio(2.5, 5), '×2.50');
  assert.equal(formatRatio(0.25, 1), '÷4.00 (×0.25)');
  assert.equal(formatRatio(null, 3), 'new (no baseline traffic)');
  assert.equal(formatRatio(null, 0), '— (no traffic in either window)');
  assert.equal(formatRatio(0, 0), 'gone (×0)');
  assert.equal(formatDelta(1234.56), '+1,234.6');
  assert.equal(formatDelta(-3), '−3');
  assert.equal(formatDelta(0), '±0');
});

test('the_snapshot_escapes_user_data_and_references_nothing_outside_itself', () => {
  const evil = '<script>alert(1)</script>"\'&';
  const m = { series: 'writes', step_ms: 1000, generated_at: '', column_unix_ms: [0, 1000], rows: [row('r<1>', evil, null, [3, 4])] };
  const view = buildView(/** @type {any} */ (m), { from: 0, to: 2000 }, null, 2);
  const html = snapshotHtml({
    view, png: 'data:image/png;base64,AAAA', series: 'writes', scale: 'log', legend: `legend ${evil}`, diff: null,
    window: { from: 0, to: 2000 }, keys: null,
    hotKeys: { hot: { series: 'writes', mode: 'raw', keys: [{ key: b64(evil), preview: evil, estimate: 7, lower: 6, upper: 8 }], total: 7, floor: 1, sampled: false }, error: null },
    fanout: { responded: 1, expected: 2, nodes: [{ node: 'n1:1', node_id: 'n1', ok: true, elapsed_ms: 3 }, { node: 'n2:1', ok: false, error: `down ${evil}` }] },
    query: `GET /admin/api/v1/keyviz/matrix?series=writes&k=${evil}`, link: 'http://x/admin/keyviz?a=1&b=2', host: 'h:1', takenAt: 0,
  });
  assert.doesNotMatch(html, /<script/i);
  assert.ok(html.includes(esc(evil)), 'user data appears escaped');
  assert.match(html, /Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'"/);
  assert.match(html, /id="nodes-summary">1\/2 nodes answered/);
  assert.match(html, /<tr class="bad"><td class="mono">n2:1/);
  assert.equal(esc(`a<b>&"'`), 'a&lt;b&gt;&amp;&quot;&#39;');
});
