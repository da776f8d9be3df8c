// Unit tests of the UI's pure modules (no DOM), run by node directly: scales, view geometry,
// and the URL <-> state round trip.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildLut, decodeKey, keyLabel, legendTicks, makeIndexScale, makeIndexTable, NO_DATA_INDEX,
  packRgba, rowInKeyRange, timeTicks,
} from '../../crates/keyviz-admin/ui/js/scales.js';
import { appendColumns, buildView, cellConflict, MAX_SLOTS, rowsKeySpan, topRows } from '../../crates/keyviz-admin/ui/js/view.js';
import { defaultState, parseQuery, toQuery } from '../../crates/keyviz-admin/ui/js/state.js';

const b64 = (s) => Buffer.from(s).toString('base64');
const row = (id, start, end, values, extra = {}) => ({
  bucket_id: id, start: start == null ? null : b64(start), end: end == null ? null : b64(end),
  aggregate: false, route_count: 1, values, ...extra,
});

test('zero_maps_to_its_own_index_and_the_smallest_value_to_a_palette_colour', () => {
  for (const kind of /** @type {const} */ (['log', 'linear'])) {
    const scale = makeIndexScale(kind, 1000);
    assert.equal(scale(0), 0);
    assert.equal(scale(-5), 0);
    assert.ok(scale(1) >= 1, `${kind}: 1 is not zero`);
    assert.equal(scale(1000), 254, `${kind}: max is the top of the palette`);
    assert.equal(scale(10_000), 254, `${kind}: above max clamps`);
    let prev = 0;
    for (let v = 0; v <= 1000; v += 7) {
      assert.ok(scale(v) >= prev, `${kind} is monotone at ${v}`);
      prev = scale(v);
    }
  }
  // Log keeps small values visible where linear crushes them.
  assert.ok(makeIndexScale('log', 100_000)(10) > makeIndexScale('linear', 100_000)(10) + 40);
});

test('index_table_agrees_with_the_scale_it_caches', () => {
  for (const kind of /** @type {const} */ (['log', 'linear'])) {
    const scale = makeIndexScale(kind, 70_000);
    const table = makeIndexTable(kind, 70_000);
    assert.equal(table.length, 65_536, 'capped');
    for (let v = 0; v < table.length; v += 13) assert.equal(table[v], scale(v));
  }
  assert.equal(makeIndexTable('log', 0).length, 1);
});

test('lut_reserves_zero_and_no_data_colours_distinct_from_the_palette', () => {
  const lut = buildLut('viridis', [1, 2, 3], [4, 5, 6]);
  assert.equal(lut.length, 256);
  assert.equal(lut[0], packRgba(1, 2, 3));
  assert.equal(lut[NO_DATA_INDEX], packRgba(4, 5, 6));
  assert.equal(new Set(lut.subarray(1, 255)).has(lut[0]), false);
  // Opaque everywhere.
  for (const v of lut) assert.equal(v >>> 24, 255);
});

test('time_ticks_are_multiples_of_the_step_and_leave_room_for_labels', () => {
  const from = Date.UTC(2026, 0, 1, 10, 3, 7);
  const to = from + 3600_000;
  const { interval, ticks } = timeTicks(from, to, 1000, 5000);
  assert.ok(interval % 5000 === 0);
  assert.ok(ticks.length >= 5 && ticks.length <= 12, `${ticks.length} ticks`);
  for (const t of ticks) {
    assert.equal(t % interval, 0);
    assert.ok(t >= from && t < to);
  }
  assert.deepEqual(timeTicks(to, from, 1000, 5000).ticks, []);
});

test('legend_ticks_are_powers_of_ten_on_log_and_quarters_on_linear', () => {
  assert.deepEqual(legendTicks('log', 564), [1, 10, 100, 564]);
  assert.deepEqual(legendTicks('linear', 400), [100, 200, 300, 400]);
  assert.deepEqual(legendTicks('log', 0), []);
});

test('key_labels_show_printable_prefixes_else_hex_and_never_throw', () => {
  assert.equal(keyLabel(decodeKey(b64('user:0042')), 'start'), 'user:0042');
  assert.equal(keyLabel(decodeKey(Buffer.from([0x74, 0x3a, 0x00, 0xff]).toString('base64')), 'start'), 't:…');
  assert.equal(keyLabel(decodeKey(Buffer.from([0x00, 0xff, 0x10]).toString('base64')), 'start'), '0x00ff10');
  assert.equal(keyLabel(null, 'start'), '(start)');
  assert.equal(keyLabel(null, 'end'), '(end)');
  assert.equal(decodeKey('%%%not base64'), null);
  assert.equal(keyLabel(decodeKey(b64('x'.repeat(40))), 'start').length, 25, 'long keys are cut with an ellipsis');
});

test('rows_overlap_a_key_range_only_when_their_ranges_intersect', () => {
  const range = { start: b64('b'), end: b64('d') };
  assert.equal(rowInKeyRange(b64('a'), b64('b'), range), false, 'ends where the range starts');
  assert.equal(rowInKeyRange(b64('a'), b64('c'), range), true);
  assert.equal(rowInKeyRange(b64('c'), null, range), true, 'unbounded tail');
  assert.equal(rowInKeyRange(b64('d'), b64('e'), range), false, 'starts at the range end');
  assert.equal(rowInKeyRange(null, b64('a'), { start: null, end: null }), true);
});

test('view_places_columns_on_a_true_time_axis_with_gaps_left_empty', () => {
  const step = 1000;
  const m = {
    column_unix_ms: [10_000, 11_000, 14_000], series: 'writes', generated_at: '', step_ms: step,
    rows: [row('a', null, 'k', [1, 0, 5]), row('b', 'k', null, [0, 0, 0])],
  };
  const v = buildView(/** @type {any} */ (m), { from: 10_000, to: 16_000 }, null);
  assert.equal(v.slots, 6);
  assert.deepEqual([...v.colSlot], [0, 1, 4]);
  assert.deepEqual([...v.slotCol], [0, 1, -1, -1, 2, -1]);
  assert.equal(v.max, 5);
  assert.deepEqual([...v.totals], [6, 0]);
  assert.deepEqual([...v.slotTotals], [1, 0, 0, 0, 5, 0], 'per-slot totals over the rows');
  assert.deepEqual(topRows(v, 5), [0], 'all-zero rows are not "hot"');
  const zoomed = buildView(/** @type {any} */ (m), { from: 10_000, to: 16_000 }, { start: b64('k'), end: null });
  assert.deepEqual(zoomed.rowIndex, [1]);
});

test('very_long_windows_are_coarsened_to_at_most_max_slots', () => {
  const m = { column_unix_ms: [0, 1000], series: 'writes', generated_at: '', step_ms: 1000, rows: [row('a', null, null, [1, 2])] };
  const v = buildView(/** @type {any} */ (m), { from: 1, to: 7 * 86_400_000 }, null);
  assert.ok(v.slots <= MAX_SLOTS);
  assert.equal(v.slotMs % 1000, 0);
  assert.equal(v.to - v.from, v.slots * v.slotMs);
});

test('conflicts_are_per_cell_with_a_whole_row_fallback', () => {
  assert.equal(cellConflict(row('a', null, null, [1, 2], { conflict: true, conflicts: [false, true] }), 0), false);
  assert.equal(cellConflict(row('a', null, null, [1, 2], { conflict: true, conflicts: [false, true] }), 1), true);
  assert.equal(cellConflict(row('a', null, null, [1, 2], { conflict: true }), 0), true);
  assert.equal(cellConflict(row('a', null, null, [1, 2]), 0), false);
});

test('live_append_slides_the_window_refreshes_overlapping_columns_and_refuses_rebucketed_rows', () => {
  const base = {
    column_unix_ms: [0, 1000, 2000], series: 'writes', generated_at: 'g1', step_ms: 1000,
    rows: [row('a', null, 'k', [1, 2, 3], { raft_group_ids: [1, 1, 1], leader_terms: [2, 2, 2] }), row('b', 'k', null, [4, 5, 6])],
  };
  const delta = {
    column_unix_ms: [2000, 3000], series: 'writes', generated_at: 'g2', step_ms: 1000,
    rows: [row('a', null, 'k', [30, 7], { conflicts: [false, true], conflict: true, raft_group_ids: [1, 1], leader_terms: [3, 3] }), row('b', 'k', null, [6, 8])],
  };
  const out = appendColumns(/** @type {any} */ (base), /** @type {any} */ (delta), 1000);
  assert.ok(out);
  assert.deepEqual(out.column_unix_ms, [1000, 2000, 3000], 'oldest column dropped, newest appended');
  assert.deepEqual(out.rows[0].values, [2, 30, 7], 'the overlapping column takes the newer value');
  assert.deepEqual(out.rows[0].conflicts, [false, false, true]);
  assert.equal(out.rows[0].conflict, true);
  assert.deepEqual(out.rows[0].leader_terms, [2, 3, 3]);
  assert.deepEqual(out.rows[1].values, [5, 6, 8]);
  assert.equal(out.rows[1].conflicts, undefined, 'clean rows stay without a conflicts array');
  assert.equal(out.generated_at, 'g2');
  const idle = { ...delta, rows: [row('b', 'k', null, [6, 8])] };
  const withIdle = appendColumns(/** @type {any} */ (base), /** @type {any} */ (idle), 0);
  assert.deepEqual(withIdle?.rows[0].values, [1, 2, 0, 0], 'a row missing from the delta was idle in its window');
  const rebucketed = { ...delta, rows: [row('a+b', null, null, [9, 9])] };
  assert.equal(appendColumns(/** @type {any} */ (base), /** @type {any} */ (rebucketed), 1000), null);
});

test('live_update_refetches_when_a_known_bucket_changes_its_key_range', () => {
  // Before the split route:1 covered [ , ∞); after it the plain id names [ , m).
  const base = { column_unix_ms: [1000], series: 'writes', generated_at: 'g1', step_ms: 1000, rows: [row('route:1', null, null, [5])] };
  const delta = { column_unix_ms: [2000], series: 'writes', generated_at: 'g2', step_ms: 1000, rows: [row('route:1', null, 'm', [1])] };
  assert.equal(appendColumns(/** @type {any} */ (base), /** @type {any} */ (delta), 0), null);
  const same = { ...delta, rows: [row('route:1', null, null, [1])] };
  assert.deepEqual(appendColumns(/** @type {any} */ (base), /** @type {any} */ (same), 0)?.rows[0].values, [5, 1]);
});

test('key_span_of_overlapping_incarnations_ends_at_the_latest_end', () => {
  // Matrix order after a split of [a, z) at m: [a, m), [a, z), [m, y).
  const rows = [row('route:1', 'a', 'm', [1]), row('route:1@0123456789abcdef', 'a', 'z', [1]), row('route:2', 'm', 'y', [1])];
  assert.deepEqual(rowsKeySpan(/** @type {any} */ (rows)), { start: b64('a'), end: b64('z') });
  assert.deepEqual(rowsKeySpan(/** @type {any} */ ([rows[0]])), { start: b64('a'), end: b64('m') });
  assert.deepEqual(rowsKeySpan(/** @type {any} */ ([rows[0], row('r', 'a', null, [1])])), { start: b64('a'), end: null });
});

test('view_state_round_trips_through_the_url_query', () => {
  const s = {
    ...defaultState(), series: /** @type {const} */ ('read_bytes'), range: /** @type {const} */ ('custom'),
    from: 1_700_000_000_000, to: 1_700_000_600_000, rows: 77, auto: 30, live: false,
    scale: /** @type {const} */ ('linear'), palette: /** @type {const} */ ('viridis'), keys: { start: b64('user:1'), end: null },
  };
  assert.deepEqual(parseQuery(toQuery(s)), s);
  assert.deepEqual(parseQuery(toQuery(defaultState())), defaultState());
});

test('malformed_links_fall_back_to_defaults_field_by_field', () => {
  const s = parseQuery('series=bogus&range=custom&from=9&to=3&rows=-4&auto=7&scale=cubic&palette=rainbow&live=yes');
  assert.deepEqual(s, defaultState(), 'an inverted custom window falls back to the default preset');
  assert.equal(parseQuery('rows=99999').rows, 1024, 'row budget clamps to the server cap');
});

test('diagnosis_names_a_hot_range_and_a_sequential_key_pattern', async () => {
  const { diagnose } = await import('../../crates/keyviz-admin/ui/js/diagnose.js');
  const n = 32;
  const cols = 64;
  const make = (fn) => ({
    column_unix_ms: Array.from({ length: cols }, (_, j) => j * 1000), series: 'writes', generated_at: '', step_ms: 1000,
    rows: Array.from({ length: n }, (_, k) => row(`r${k}`, `k${String(k).padStart(2, '0')}`, null, Array.from({ length: cols }, (_, j) => fn(k, j)))),
  });
  const label = (k) => `k${String(k).padStart(2, '0')}`;
  const both = make((k, j) => (k === 10 || k === 11 ? 500 : 0) + (j % n === k ? 100 : 0) + 2);
  const v = buildView(/** @type {any} */ (both), { from: 0, to: cols * 1000 }, null);
  const found = diagnose(v, label);
  assert.deepEqual(found.map((f) => f.kind), ['hot_range', 'sequential']);
  assert.deepEqual(found[0].rows, [10, 11]);
  assert.match(found[0].text, /k10 … k11 carries \d+% of writes/);
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const noise = make(() => Math.floor(rand() * 100));
  assert.deepEqual(diagnose(buildView(/** @type {any} */ (noise), { from: 0, to: cols * 1000 }, null), label), [], 'uniform noise shows no pattern');
  const reversed = make((k, j) => ((n - 1 - (j % n)) === k ? 100 : 2));
  assert.deepEqual(diagnose(buildView(/** @type {any} */ (reversed), { from: 0, to: cols * 1000 }, null), label), [], 'a backward sweep is not reported as forward');
});

test('key_prefix_becomes_the_range_of_keys_that_start_with_it', async () => {
  const { prefixRange } = await import('../../crates/keyviz-admin/ui/js/scales.js');
  assert.deepEqual(prefixRange(' user: '), { start: b64('user:'), end: b64('user;') });
  assert.deepEqual(prefixRange('0x00ff'), { start: Buffer.from([0, 255]).toString('base64'), end: Buffer.from([1]).toString('base64') });
  assert.deepEqual(prefixRange('0xffff'), { start: Buffer.from([255, 255]).toString('base64'), end: null }, 'no successor: unbounded');
  assert.equal(prefixRange(''), null);
  assert.equal(prefixRange('0xzz'), null);
});

test('leader_changes_are_found_per_group_skipping_cells_without_identity', async () => {
  const { leaderChanges } = await import('../../crates/keyviz-admin/ui/js/view.js');
  const m = {
    column_unix_ms: [0, 1000, 2000, 3000, 4000], series: 'writes', generated_at: '', step_ms: 1000,
    rows: [
      row('a', null, 'k', [1, 1, 0, 1, 1], { raft_group_ids: [2, 2, 0, 2, 2], leader_terms: [9, 9, 0, 10, 10] }),
      row('b', 'k', 'm', [1, 1, 1, 1, 1], { raft_group_ids: [1, 1, 3, 3, 3], leader_terms: [5, 5, 7, 7, 8] }),
      row('c', 'm', null, [1, 1], {}),
    ],
  };
  m.rows[2].values = [1, 1, 1, 1, 1];
  const v = buildView(/** @type {any} */ (m), { from: 0, to: 5000 }, null);
  assert.deepEqual(leaderChanges(v), [[0, 3], [1, 4]], 'a gap keeps the previous term; a new group is not a change');
});

test('csv_fields_are_quoted_and_defused_against_formula_injection', async () => {
  const { csvCell, toCsv } = await import('../../crates/keyviz-admin/ui/js/export.js');
  assert.equal(csvCell('user:1'), 'user:1');
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('say "hi"'), '"say ""hi"""');
  assert.equal(csvCell('=HYPERLINK("x")'), `"'=HYPERLINK(""x"")"`);
  assert.equal(csvCell('@cmd'), "'@cmd");
  const m = {
    column_unix_ms: [0, 1000], series: 'writes', generated_at: '', step_ms: 1000,
    rows: [row('route:1', '=1+1', null, [3, 4])],
  };
  const csv = toCsv(buildView(/** @type {any} */ (m), { from: 0, to: 2000 }, null));
  const [head, line] = csv.trim().split('\n');
  assert.equal(head, 'bucket_id,label,start_hex,end_hex,aggregate,route_count,total,1970-01-01T00:00:00.000Z,1970-01-01T00:00:01.000Z');
  assert.equal(line, "route:1,'=1+1,3d312b31,(end),false,1,7,3,4");
});

// ---- key-axis labels (labels.js) ----------------------------------------------------------
import { chooseLabelRows, elideCommonPrefix, fitText, labelCentre, rowLabel, rowTitle } from '../../crates/keyviz-admin/ui/js/labels.js';

test('row_label_prefers_the_first_observed_key_over_a_computed_boundary', () => {
  // `start` is an interpolated boundary nobody wrote (k,… = 6b2cf340); first_key is real.
  const r = row('route:7:1', '\x6b\x2c\xf3\x40', null, [1], { preview: 'k,…', first_key: b64('hot:counter'), last_key: b64('hot:zz') });
  assert.equal(rowLabel(r), 'hot:counter');
  assert.equal(rowLabel({ ...r, first_key: undefined }), 'k,…', 'falls back to the preview of start');
  assert.equal(rowLabel({ ...r, first_key: undefined, preview: undefined }), 'k,…');
  const t = rowTitle(r);
  assert.match(t, /first key: hot:counter/);
  assert.match(t, /last key: hot:zz/);
  assert.match(t, /range: \[k,…, \(end\)\)/);
  assert.match(t, /bucket: route:7:1/);
});

test('common_prefix_with_the_label_above_is_elided_at_a_component_boundary', () => {
  assert.equal(elideCommonPrefix(null, 'user:0042'), 'user:0042', 'the first label is whole');
  assert.equal(elideCommonPrefix('user:0042', 'user:0097'), '…0097');
  assert.equal(elideCommonPrefix('user:0042:a', 'user:0042:b'), '…b');
  assert.equal(elideCommonPrefix('user0042', 'user0097'), '…0097', 'letters turning into digits are a boundary too');
  assert.equal(elideCommonPrefix('hot:counter', 'seq:000001'), 'seq:000001', 'nothing shared: whole');
  assert.equal(elideCommonPrefix('ab:1', 'ab:2'), 'ab:2', 'too short to be worth eliding');
  assert.equal(elideCommonPrefix('user:0042', 'user:0042'), 'user:0042', 'never empty');
  assert.equal(elideCommonPrefix('0x00ff1020', '0x00ff1130'), '0x…1130', 'hex cuts at whole bytes');
});

test('label_choice_keeps_the_busiest_rows_and_never_overlaps', () => {
  // 200 rows of 2 px: only ~28 labels fit 14 px apart; rows 3 and 150 are the hottest, and 151,
  // right next to 150, is busy too: its label moves off its row to make room (at most 14 px).
  const n = 200;
  const totals = new Float64Array(n);
  totals[3] = 1000;
  totals[150] = 4500;
  totals[151] = 3000;
  const placed = chooseLabelRows(n, 2, 14, totals);
  const rows = placed.map((p) => p.k);
  assert.ok(rows.includes(3) && rows.includes(150) && rows.includes(151), `busy rows labelled: ${rows}`);
  const at = (k) => placed.find((p) => p.k === k).y;
  assert.equal(at(150), 150.5 * 2, 'the busiest sits on its row');
  assert.ok(Math.abs(at(151) - 151.5 * 2) <= 14, 'a nudged label stays near its row');
  for (let i = 1; i < placed.length; i++) {
    assert.ok(placed[i].y - placed[i - 1].y >= 14 - 1e-9, `labels ${placed[i - 1].k} and ${placed[i].k} overlap`);
    assert.ok(placed[i].k > placed[i - 1].k, 'labels keep the rows\' order');
  }
  assert.ok(placed.length >= 20, `the gaps are filled (${placed.length} labels)`);
  // A quiet filler row is never moved: only busy rows are nudged.
  for (const p of placed) if (totals[p.k] === 0) assert.equal(p.y, labelCentre(p.k, 2, n * 2, 14));
  // Two busy rows at the very top: the first is clamped into the box, the second goes under it.
  const top = new Float64Array(300);
  top[0] = 5;
  top[1] = 4;
  const head = chooseLabelRows(300, 2, 14, top).slice(0, 2);
  assert.deepEqual(head, [{ k: 0, y: 7 }, { k: 1, y: 21 }]);
  // When every row fits, every row is labelled on its centre.
  assert.deepEqual(chooseLabelRows(3, 20, 14, new Float64Array(3)), [{ k: 0, y: 10 }, { k: 1, y: 30 }, { k: 2, y: 50 }]);
});

test('labels_stay_inside_the_axis_box_and_fit_its_width', () => {
  // 149 rows in 160 px: the top row's centre is at 0.5 px; a 13 px label must move down.
  assert.equal(labelCentre(0, 160 / 149, 160, 13), 6.5);
  assert.equal(labelCentre(148, 160 / 149, 160, 13), 160 - 6.5);
  assert.equal(labelCentre(70, 160 / 149, 160, 13), (70.5 * 160) / 149);
  const measure = (s) => [...s].length * 7;
  assert.equal(fitText('hot:counter', 100, measure), 'hot:counter');
  const cut = fitText('user:0042:a-very-long-key-name', 70, measure);
  assert.ok(measure(cut) <= 70 && cut.endsWith('…') && cut.startsWith('user:'), cut);
});
