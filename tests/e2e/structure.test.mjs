// Unit tests (node --test, no browser) of the modules createApp was split into: the loader
// (fetching, live appends, polling, late answers), the view state (fitted window, one row
// layout across series, read roles, the outage log, legend tick thinning) and the pure parts
// of the renderers (plot height, header, summary), plus the URL state they rely on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLoader, keyParams } from '../../crates/keyviz-admin/ui/js/loader.js';
import {
  composeLayout, coverageOutages, dataExtent, displayWindow, fitPreset, outageLanes, recordEntryFailure, recordFanout, recordGaps,
  seriesPlan, thinTicks, ViewModel,
} from '../../crates/keyviz-admin/ui/js/viewstate.js';
import { MIN_ROW_PX, plotHeight, renderHeader, summaryText } from '../../crates/keyviz-admin/ui/js/render/page.js';
import { defaultState, parseQuery, pinnedQuery, toQuery } from '../../crates/keyviz-admin/ui/js/state.js';
import { buildView } from '../../crates/keyviz-admin/ui/js/view.js';
import { describeCell } from '../../crates/keyviz-admin/ui/js/inspect.js';

const MIN = 60_000;
const b64 = (s) => Buffer.from(s).toString('base64');
const row = (id, start, end, values, extra = {}) => ({
  bucket_id: id, start: start == null ? null : b64(start), end: end == null ? null : b64(end),
  aggregate: false, route_count: 1, values, ...extra,
});
const matrix = (series, cols, rows, extra = {}) => ({ series, column_unix_ms: cols, rows, generated_at: '', step_ms: 5000, ...extra });

test('auto_range_fits_a_young_history_to_the_narrowest_preset_then_the_default_hour', () => {
  assert.equal(fitPreset(50_000), '1m');
  assert.equal(fitPreset(90_000), '2m', 'a 90 s history fills three quarters of the width');
  assert.equal(fitPreset(3 * MIN), '5m');
  assert.equal(fitPreset(5 * MIN + 1), '10m');
  assert.equal(fitPreset(40 * MIN), '1h');
  assert.equal(fitPreset(30 * 60 * MIN), '1h', 'an old history gets the default window');
  const now = 10_000_000;
  const s = defaultState();
  assert.equal(s.range, 'auto', 'the default view fits the data');
  const m = matrix('writes', [now - 3 * MIN, now - 3 * MIN + 5000], []);
  const w = displayWindow(s, { from: now - 60 * MIN, to: now }, m, now);
  assert.deepEqual(w, { from: now - 5 * MIN, to: now, fitted: '5m' });
  // An explicit preset is not fitted; a custom window is kept as asked.
  assert.equal(displayWindow({ ...s, range: '1h' }, { from: now - 60 * MIN, to: now }, m, now).fitted, null);
  assert.deepEqual(displayWindow({ ...s, range: 'custom', from: 5, to: 9 }, { from: 5, to: 9 }, m, now), { from: 5, to: 9, fitted: null });
  // No columns at all: the default hour (the empty state explains).
  assert.equal(displayWindow(s, { from: now - 60 * MIN, to: now }, matrix('writes', [], []), now).fitted, '1h');
});

test('fit_to_data_spans_the_columns_with_traffic_only', () => {
  const t0 = 1_000_000_000;
  const cols = [0, 1, 2, 3, 4, 5].map((i) => t0 + i * 5000);
  const m = matrix('writes', cols, [row('a', 'a', 'b', [0, 0, 3, 0, 7, 0]), row('b', 'b', null, [0, 0, 0, 0, 0, 0])]);
  const v = buildView(m, { from: t0, to: t0 + 30_000 }, null);
  assert.deepEqual(dataExtent(v), { from: t0 + 10_000, to: t0 + 30_000 }, 'from the first busy column, at least 4 steps wide');
  const idle = buildView(matrix('writes', cols, [row('b', 'b', null, [0, 0, 0, 0, 0, 0])]), { from: t0, to: t0 + 30_000 }, null);
  assert.equal(dataExtent(idle), null);
});

test('row_layout_is_the_union_of_the_series_rows_so_keys_keep_their_height', () => {
  const cols = [0, 5000];
  const writes = matrix('writes', cols, [row('r1', 'a', 'b', [1, 2]), row('r3', 'c', 'd', [5, 5])]);
  const reads = matrix('reads', cols, [row('r1', 'a', 'b', [9, 9]), row('r2', 'b', 'c', [4, 4]), row('r3', 'c', 'd', [1, 1])]);
  const w = composeLayout(writes, [reads]);
  const r = composeLayout(reads, [writes]);
  assert.deepEqual(w.rows.map((x) => x.bucket_id), ['r1', 'r2', 'r3'], 'the read-only row joins the write layout in key order');
  assert.deepEqual(r.rows.map((x) => x.bucket_id), w.rows.map((x) => x.bucket_id), 'same layout in both series');
  assert.deepEqual(w.rows[1].values, [0, 0], 'the borrowed row is all zero in this series');
  assert.equal(w.rows[1].layout_only, true);
  assert.deepEqual(w.rows[2].values, [5, 5], 'the series keeps its own values');
  // A row coarsened differently (overlapping another row of the main series) is left out:
  // a key is never drawn at two heights.
  const coarse = matrix('reads', cols, [row('agg', 'a', 'd', [3, 3], { aggregate: true })]);
  assert.deepEqual(composeLayout(writes, [coarse]).rows.map((x) => x.bucket_id), ['r1', 'r3']);
  assert.equal(composeLayout(writes, []), writes, 'nothing to add: the same matrix');
});

test('reads_say_which_role_served_them_instead_of_a_term', () => {
  const cols = [0, 5000];
  const reads = matrix('reads', cols, [row('r1', 'a', 'b', [10, 4], { raft_group_ids: [1, 1], leader_terms: [0, 0] })]);
  const leader = matrix('leader_reads', cols, [row('r1', 'a', 'b', [7, 4])]);
  const m = composeLayout(reads, [], leader);
  assert.deepEqual(m.rows[0].leader_values, [7, 4]);
  const v = buildView(m, { from: 0, to: 10_000 }, null);
  const info = describeCell(v, { k: 0, slot: 0 });
  assert.equal(info.raft, 'group 1, served by the leader: 7, by followers: 3');
  assert.equal(info.readRole, true);
  assert.doesNotMatch(info.raft, /term/);
  // Writes keep their group and term.
  const wv = buildView(matrix('writes', cols, [row('r1', 'a', 'b', [1, 1], { raft_group_ids: [2, 2], leader_terms: [9, 9] })]), { from: 0, to: 10_000 }, null);
  assert.equal(describeCell(wv, { k: 0, slot: 1 }).raft, 'group 2, term 9');
  assert.deepEqual(seriesPlan('reads'), ['reads', 'writes', 'leader_reads']);
  assert.deepEqual(seriesPlan('writes'), ['writes', 'reads']);
});

test('outage_log_opens_extends_and_closes_per_node_and_dates_the_start_from_the_server', () => {
  const down = { nodes: [{ node: 'h1', node_id: 'n1', ok: true }, { node: 'h2', node_id: 'n2', ok: false, error: 'connect: refused' }], responded: 1, expected: 2 };
  const up = { nodes: [{ node: 'h1', node_id: 'n1', ok: true }, { node: 'h2', node_id: 'n2', ok: true }], responded: 2, expected: 2 };
  let log = recordFanout([], down, 1000, new Map([['h2', 400]]));
  assert.equal(log.length, 1);
  assert.deepEqual({ ...log[0] }, { node: 'h2', nodeId: 'n2', error: 'connect: refused', from: 400, to: 1000, recovered: null, entry: false });
  log = recordFanout(log, down, 2000);
  assert.equal(log.length, 1, 'the open outage is extended, not duplicated');
  assert.equal(log[0].to, 2000);
  log = recordFanout(log, up, 3000);
  assert.equal(log[0].recovered, 3000, 'answering again closes it');
  log = recordFanout(log, down, 4000);
  assert.equal(log.length, 2, 'a second outage is a new entry');
  const lanes = outageLanes(log, 0, 10_000, 5000);
  assert.equal(lanes.length, 1, 'one lane per node');
  assert.deepEqual(lanes[0].spans.map((s) => [s.from, s.to]), [[400, 3000], [4000, 5000]], 'the open one runs until now');
  assert.deepEqual(outageLanes(log, 3100, 3900, 5000), [], 'a window between outages has no lane');
  // The entry node itself: opened on a network error, closed by the next answer.
  let e = recordEntryFailure([], 'h1', 'network_error', 7000, 6000);
  assert.equal(e[0].entry, true);
  assert.equal(e[0].from, 6000, 'dated from the last answer');
  e = recordFanout(e, up, 8000);
  assert.equal(e[0].recovered, 8000);
});

test('coverage_gaps_join_the_log_widened_not_duplicated_and_survive_the_node_going_down', () => {
  const m = (missing) => ({ coverage: [{ node: 'h2', node_id: 'n2', missing }] });
  let log = recordGaps([], coverageOutages(m([[1000, 5000]])));
  assert.equal(log.length, 1);
  assert.equal(log[0].gap, true);
  assert.equal(log[0].recovered, 5000, 'a gap ends with the restart');
  log = recordGaps(log, coverageOutages(m([[1000, 5000]])));
  assert.equal(log.length, 1, 'the same gap on the next load is not added twice');
  log = recordGaps(log, coverageOutages(m([[3000, 6000]])));
  assert.deepEqual([log.length, log[0].from, log[0].to], [1, 1000, 6000], 'an overlapping run widens it');
  // The node goes down: its coverage is no longer reported, the logged gap stays on its lane.
  log = recordFanout(recordGaps(log, coverageOutages({})), { nodes: [{ node: 'h2', node_id: 'n2', ok: false, error: 'refused' }], responded: 1, expected: 2 }, 9000);
  const lanes = outageLanes(log, 0, 10_000, 9000);
  assert.equal(lanes.length, 1);
  assert.deepEqual(lanes[0].spans.map((s) => [s.from, s.to, !!s.outage.gap]), [[1000, 6000, true], [9000, 9000, false]]);
});

test('legend_ticks_never_overlap_and_keep_the_max', () => {
  const w = (s) => s.length * 6.5;
  const kept = thinTicks([{ x: 0, text: '1' }, { x: 90, text: '10' }, { x: 270, text: '100' }, { x: 280, text: '104' }], w);
  assert.deepEqual(kept.map((t) => t.text), ['1', '10', '104'], '"100" under "104" is dropped, the max stays');
  for (let i = 1; i < kept.length; i++) assert.ok(kept[i].x - kept[i - 1].x >= (w(kept[i].text) + w(kept[i - 1].text)) / 2);
  assert.deepEqual(thinTicks([{ x: 0, text: '1' }, { x: 200, text: '1k' }], w).length, 2);
});

test('rows_are_never_thinner_than_the_readable_minimum', () => {
  for (const n of [1, 10, 64, 159, 300, 1024]) {
    const h = plotHeight(n);
    assert.ok(h / n >= MIN_ROW_PX || n * MIN_ROW_PX <= 160, `${n} rows: ${h / n} px each`);
  }
  assert.equal(plotHeight(159), 159 * MIN_ROW_PX, 'the plot grows with the rows (the page scrolls)');
  assert.ok(plotHeight(10) / 10 <= 28);
});

test('header_says_when_the_entry_node_is_gone_instead_of_a_stale_count', () => {
  const el = { textContent: '', className: '' };
  const model = new ViewModel();
  model.lastFanout = { nodes: [], responded: 2, expected: 3 };
  model.lastAnswerAt = Date.UTC(2026, 0, 1, 12, 0, 0);
  renderHeader(el, model, false);
  assert.equal(el.textContent, 'cluster view (2 of 3 nodes)');
  assert.match(el.className, /bad/);
  renderHeader(el, model, true);
  assert.match(el.textContent, /^entry node not answering; last answer .* \(2 of 3 nodes then\)$/);
  assert.doesNotMatch(el.textContent, /^cluster view/);
});

test('summary_names_the_fitted_window_and_the_live_span', () => {
  const m = matrix('writes', [0], [row('a', 'a', null, [1])]);
  const v = buildView(m, { from: 0, to: 5000 }, null);
  assert.match(summaryText(v, m, defaultState(), '5m'), /fitted to the data: last 5 min/);
  assert.match(summaryText(v, m, { ...defaultState(), range: 'span', span: 64_000 }, null), /last 1 min 4 s|last 64 s|last 1m ?4s/);
});

test('permalinks_pin_absolute_time_and_restore_the_key_prefix_and_the_live_span', () => {
  const s = { ...defaultState(), series: 'reads', range: '15m', live: true, prefix: 'user:004', keys: { start: b64('user:004'), end: b64('user:005') } };
  const q = new URLSearchParams(pinnedQuery(s, { from: 1000.4, to: 9000.6 }));
  assert.equal(q.get('range'), 'custom');
  assert.equal(q.get('from'), '1000');
  assert.equal(q.get('to'), '9001');
  assert.equal(q.get('live'), null, 'a pinned link does not slide');
  assert.equal(q.get('prefix'), 'user:004');
  const back = parseQuery(q.toString());
  assert.equal(back.prefix, 'user:004', 'the prefix box comes back with its text');
  assert.deepEqual(back.keys, s.keys);
  assert.equal(back.series, 'reads');
  // A prefix alone sets the key range; a span round-trips; bad spans fall back to auto.
  assert.deepEqual(parseQuery('prefix=user%3A004').keys, s.keys);
  const span = { ...defaultState(), range: 'span', span: 64_000, live: true };
  assert.deepEqual(parseQuery(toQuery(span)), span);
  assert.equal(parseQuery('range=span&span=5').range, 'auto');
});

test('view_model_refinds_the_pinned_cell_by_bucket_and_time', () => {
  const model = new ViewModel();
  const m1 = matrix('writes', [0, 5000], [row('a', 'a', 'b', [1, 1]), row('b', 'b', null, [1, 1])]);
  model.setLoad([m1], ['writes'], { from: 0, to: 10_000 });
  model.view = buildView(model.matrix, { from: 0, to: 10_000 }, null);
  model.pinned = { k: 1, slot: 1, bucket: 'b', time: 5000 };
  const m2 = matrix('writes', [0, 5000], [row('0', '', 'a', [1, 1]), row('a', 'a', 'b', [1, 1]), row('b', 'b', null, [1, 1])]);
  model.setLoad([m2], ['writes'], { from: 0, to: 10_000 });
  model.view = buildView(model.matrix, { from: 0, to: 10_000 }, null);
  assert.deepEqual(model.repin(), { k: 2, slot: 1, bucket: 'b', time: 5000 });
  model.pinned = { k: 0, slot: 0, bucket: 'gone', time: 0 };
  assert.equal(model.repin(), null);
  assert.equal(model.pinned, null);
  assert.deepEqual(model.loaded().map((x) => x.series), ['writes']);
});

/** A loader on fakes: a scripted fetch, a manual clock and manual timers. */
function fakeLoader(state, respond) {
  const calls = [];
  const events = [];
  let have = [];
  let tick = null;
  const loader = createLoader({
    state: () => state,
    loaded: () => have,
    fetchMatrix: (p, slot) => {
      calls.push({ ...p, slot });
      return respond(p, slot);
    },
    now: () => 1_000_000,
    hidden: () => false,
    setInterval: (fn) => { tick = fn; return 1; },
    clearInterval: () => { tick = null; },
    onStart: (first) => events.push(['start', first]),
    onLoaded: (r) => { events.push(['loaded', r.plan, r.appended]); have = r.matrices; },
    onError: (err) => events.push(['error', String(err)]),
  });
  return { loader, calls, events, tick: () => tick?.() };
}

test('loader_fetches_the_views_series_and_tolerates_a_failed_companion', async () => {
  const state = { ...defaultState(), series: 'reads' };
  const { loader, calls, events } = fakeLoader(state, async (p) => {
    if (p.series === 'writes') throw new Error('peer down');
    return matrix(p.series, [1_000_000 - 10_000], []);
  });
  await loader.load(false);
  assert.deepEqual(calls.map((c) => c.series), ['reads', 'writes', 'leader_reads'], 'main series first');
  assert.equal(calls[0].from, 1_000_000 - 3_600_000, 'auto fetches the default hour');
  assert.deepEqual(events.at(-1), ['loaded', ['reads', 'leader_reads'], false], 'the failed companion is left out');
  assert.deepEqual(keyParams({ start: null, end: 'eA==' }), { keyEnd: 'eA==' });
});

test('loader_reports_a_main_failure_and_drops_a_superseded_answer', async () => {
  const state = defaultState();
  let release;
  const gate = new Promise((r) => { release = r; });
  let n = 0;
  const { loader, events } = fakeLoader(state, async (p) => {
    n++;
    if (n <= 2) {
      await gate;
      return matrix(p.series, [1], [row('old', 'a', null, [1])]);
    }
    return matrix(p.series, [1], [row('new', 'a', null, [1])]);
  });
  const first = loader.load(false);
  const second = loader.load(false);
  await second;
  release();
  await first;
  assert.equal(events.filter((e) => e[0] === 'loaded').length, 1, 'only the newest load lands');
  const bad = fakeLoader(state, async () => { throw new Error('boom'); });
  await bad.loader.load(false);
  assert.deepEqual(bad.events.at(-1), ['error', 'Error: boom']);
});

test('loader_live_tick_appends_only_the_newest_columns_of_every_series_and_polls', async () => {
  const state = { ...defaultState(), live: true };
  const step = 5000;
  const base = [1_000_000 - 3 * step, 1_000_000 - 2 * step, 1_000_000 - step];
  const { loader, calls, events, tick } = fakeLoader(state, async (p) => {
    const cols = p.to === undefined && p.from > 1_000_000 - 3 * step ? [base[1], base[2], 1_000_000] : base;
    return matrix(p.series, cols, [row('a', 'a', null, cols.map(() => 1))]);
  });
  await loader.load(false);
  calls.length = 0;
  await loader.load(true);
  assert.deepEqual(calls.map((c) => [c.series, c.from]), [['writes', base[1]], ['reads', base[1]]], 're-asks the last two columns of each series');
  assert.deepEqual(events.at(-1), ['loaded', ['writes', 'reads'], true]);
  loader.schedule();
  assert.equal(loader.polling, true, 'live polls');
  calls.length = 0;
  tick();
  await new Promise((r) => setTimeout(r, 0));
  assert.ok(calls.length > 0, 'a poll tick loads');
  state.live = false;
  loader.schedule();
  assert.equal(loader.polling, false);
});

test('a_regular_burst_beside_a_hot_row_is_named_as_periodic_and_noise_is_not', async () => {
  const { diagnose, periodicBursts } = await import('../../crates/keyviz-admin/ui/js/diagnose.js');
  const step = 1000;
  const cols = Array.from({ length: 120 }, (_, j) => j * step);
  // A hot row (constant), ten scanned rows with +3 every 8 steps, ten quiet rows.
  const rows = [row('hot', 'a', 'b', cols.map(() => 5000))];
  for (let i = 0; i < 10; i++) rows.push(row(`s${i}`, `s${i}`, `s${i}~`, cols.map((_, j) => 2 + (j % 8 === 3 ? 3 : 0))));
  for (let i = 0; i < 10; i++) rows.push(row(`z${i}`, `z${i}`, `z${i}~`, cols.map((_, j) => 1 + ((j * 7 + i) % 3))));
  const v = buildView(matrix('reads', cols, rows, { step_ms: step }), { from: 0, to: 120 * step }, null);
  const f = diagnose(v, (k) => v.matrix.rows[v.rowIndex[k]].bucket_id).find((x) => x.kind === 'periodic');
  assert.ok(f, 'the periodic scan is named');
  assert.match(f.text, /every 8 s, 15 steps stand out/);
  assert.deepEqual(f.rows, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'the scanned rows, not the hot one or the quiet ones');
  // Irregular bursts and flat noise are not periodic.
  const irregular = rows.slice(0, 1).concat(Array.from({ length: 10 }, (_, i) => row(`s${i}`, `s${i}`, `s${i}~`, cols.map((_, j) => 2 + ([3, 4, 17, 50, 51, 90].includes(j) ? 6 : 0)))));
  const vi = buildView(matrix('reads', cols, irregular, { step_ms: step }), { from: 0, to: 120 * step }, null);
  assert.equal(periodicBursts(vi, new Uint8Array(vi.rowIndex.length)), null);
  const flat = buildView(matrix('reads', cols, rows.slice(11), { step_ms: step }), { from: 0, to: 120 * step }, null);
  assert.equal(diagnose(flat, () => '').some((x) => x.kind === 'periodic'), false);
});

test('a_hot_row_that_only_bunches_on_the_beat_is_not_named_as_the_scanned_range', async () => {
  const { diagnose } = await import('../../crates/keyviz-admin/ui/js/diagnose.js');
  const step = 1000;
  const cols = Array.from({ length: 120 }, (_, j) => j * step);
  // The demo's shape: a hot counter whose noise lands a little higher on the scan's beat (+40
  // on 5000, a larger absolute excess than the scan's +3), then the scanned rows.
  const rows = [row('hot', 'a', 'b', cols.map((_, j) => 5000 + (j % 8 === 3 ? 40 : 0)))];
  for (let i = 0; i < 10; i++) rows.push(row(`s${i}`, `s${i}`, `s${i}~`, cols.map((_, j) => 2 + (j % 8 === 3 ? 3 : 0))));
  const v = buildView(matrix('reads', cols, rows, { step_ms: step }), { from: 0, to: 120 * step }, null);
  const f = diagnose(v, (k) => v.matrix.rows[v.rowIndex[k]].bucket_id).find((x) => x.kind === 'periodic');
  assert.ok(f, 'the periodic scan is named');
  assert.deepEqual(f.rows, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'the scanned rows only, not the hot counter');
});

test('brightness_lowers_the_top_colour_and_round_trips_in_the_url', async () => {
  const { colourMaxOf } = await import('../../crates/keyviz-admin/ui/js/render/page.js');
  assert.equal(colourMaxOf(1000, 0), 1000);
  assert.equal(colourMaxOf(1000, 2), 250);
  assert.equal(colourMaxOf(1000, -1), 2000);
  assert.equal(colourMaxOf(3, 8), 1, 'never below one');
  const s = { ...defaultState(), bright: 3 };
  assert.deepEqual(parseQuery(toQuery(s)), s);
  assert.equal(parseQuery('bright=99').bright, 0, 'out of range falls back');
});

test('a_live_delta_at_another_resolution_is_not_appended', async () => {
  const { appendColumns } = await import('../../crates/keyviz-admin/ui/js/view.js');
  const base = matrix('writes', [0, 60_000], [row('a', 'a', null, [1, 1])], { step_ms: 60_000 });
  const same = matrix('writes', [60_000, 120_000], [row('a', 'a', null, [2, 3])], { step_ms: 60_000 });
  assert.deepEqual(appendColumns(base, same, 0).column_unix_ms, [0, 60_000, 120_000]);
  const finer = matrix('writes', [60_000, 65_000], [row('a', 'a', null, [2, 3])], { step_ms: 5_000 });
  assert.equal(appendColumns(base, finer, 0), null, 'another tier: fetch the whole window again');
});
