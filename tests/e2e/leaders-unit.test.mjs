// Unit tests (node --test, no browser) of the term-leader words: the server's `leaders` checked
// at the boundary, merged across live deltas, and turned into "group 2: term 9 → 10, leader n1
// (was n2)" for the ticks, tooltips, the sentence list and restart marks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  describeLeaderChange, describeTerm, leaderChangeList, leaderOf, mergeLeaders, normalizeLeaders, outageAround, takeoversDuring,
} from '../../crates/keyviz-admin/ui/js/leaders.js';
import { normalizeMatrix } from '../../crates/keyviz-admin/ui/js/api.js';
import { appendColumns, buildView } from '../../crates/keyviz-admin/ui/js/view.js';
import { describeCell } from '../../crates/keyviz-admin/ui/js/inspect.js';
import { coverageOutages } from '../../crates/keyviz-admin/ui/js/viewstate.js';

const STEP = 5000;
const b64 = (s) => Buffer.from(s).toString('base64');
const row = (id, start, end, groups, terms) => ({
  bucket_id: id, start: start == null ? null : b64(start), end: end == null ? null : b64(end),
  aggregate: false, route_count: 1, values: groups.map(() => 3), raft_group_ids: groups, leader_terms: terms,
});
const cols = (n) => Array.from({ length: n }, (_, j) => j * STEP);
const leaders = [
  { group: 2, term: 9, node_id: 'n2' },
  { group: 2, term: 10, node_id: 'n1' },
  { group: 1, term: 8, node_id: 'n1' },
];
/** Group 2 moves from term 9 to 10 at column 3 in two rows; group 1 stays at term 8. */
const writes = (extra = {}) => ({
  series: 'writes', generated_at: '', step_ms: STEP, column_unix_ms: cols(6),
  rows: [
    row('a', null, 'k', [2, 2, 2, 2, 2, 2], [9, 9, 9, 10, 10, 10]),
    row('b', 'k', 'm', [2, 2, 0, 0, 2, 2], [9, 9, 0, 0, 10, 10]),
    row('c', 'm', null, [1, 1, 1, 1, 1, 1], [8, 8, 8, 8, 8, 8]),
  ],
  leaders,
  ...extra,
});
const view = (m) => buildView(/** @type {any} */ (m), { from: 0, to: 6 * STEP }, null);

test('the_answers_leaders_are_checked_at_the_boundary_and_malformed_entries_dropped', () => {
  assert.deepEqual(normalizeLeaders([
    { group: 2, term: 9, node_id: 'n2', extra: 1 },
    { group: 0, term: 9, node_id: 'n2' },
    { group: 2, term: 1.5, node_id: 'n2' },
    { group: 2, term: 9, node_id: '' },
    null, 'x',
  ]), [{ group: 2, term: 9, node_id: 'n2' }]);
  assert.equal(normalizeLeaders('nope'), undefined);
  assert.equal(normalizeLeaders([{ group: 1 }]), undefined, 'nothing valid: absent');
  const m = normalizeMatrix({ column_unix_ms: [0], rows: [{ bucket_id: 'a', values: [1] }], leaders: [{ group: 1, term: 2, node_id: 'node-3' }, { bad: true }] });
  assert.deepEqual(m.leaders, [{ group: 1, term: 2, node_id: 'node-3' }]);
  assert.equal(normalizeMatrix({ column_unix_ms: [], rows: [] }).leaders, undefined, 'an older server sends none');
});

test('leader_changes_name_who_took_over_from_whom_once_per_group_and_term', () => {
  const changes = leaderChangeList(view(writes()));
  assert.equal(changes.length, 1, 'two rows of group 2 change together: one change');
  const [c] = changes;
  assert.deepEqual({ ...c, outage: null }, { group: 2, fromTerm: 9, toTerm: 10, at: 3 * STEP, lastBefore: 2 * STEP, leader: 'n1', was: 'n2', outage: null });
  assert.equal(describeLeaderChange(c), 'group 2: term 9 → 10, leader n1 (was n2)');
  // Without leaders (an older server) the terms are still named.
  const plain = leaderChangeList(view(writes({ leaders: undefined })));
  assert.equal(describeLeaderChange(plain[0]), 'group 2: term 9 → 10');
  assert.equal(describeLeaderChange({ ...c, was: 'n1' }), 'group 2: term 9 → 10, leader n1 again (a new election, same node)');
  assert.equal(describeLeaderChange({ ...c, leader: '' }), 'group 2: term 9 → 10 (was n2; the new leader was not named by the server)');
  assert.equal(leaderOf(writes(), 1, 8), 'n1');
  assert.equal(leaderOf(writes(), 1, 9), '', 'an unnamed term');
  assert.equal(describeTerm(writes(), 2, 10), 'group 2, term 10, led by n1');
  assert.equal(describeTerm(writes(), 3, 4), 'group 3, term 4');
});

test('a_change_while_the_old_leader_was_down_or_restarting_names_that_outage', () => {
  const m = writes({ coverage: [{ node: 'h2', node_id: 'n2', missing: [[STEP * 2, STEP * 3]] }] });
  const gaps = coverageOutages(/** @type {any} */ (m));
  const far = { node: 'h2', nodeId: 'n2', error: 'refused', from: 100 * STEP, to: 101 * STEP, recovered: 102 * STEP, entry: false };
  const other = { node: 'h3', nodeId: 'n3', error: 'refused', from: 2 * STEP, to: 3 * STEP, recovered: 3 * STEP, entry: false };
  const log = [far, other, ...gaps];
  const [c] = leaderChangeList(view(m), log, 10 * STEP);
  assert.equal(c.outage, gaps[0], 'the old leader n2\'s gap around the change, not n3\'s nor a later one');
  assert.match(describeLeaderChange(c), /^group 2: term 9 → 10, leader n1 \(was n2\); n2 was down or restarting from .+ to .+ \(restarted, its columns resume at .+\)$/);
  assert.equal(outageAround(log, 'n2', 50 * STEP, 51 * STEP, STEP, 200 * STEP), null, 'nothing near: no outage');
  const open = { ...far, from: 2 * STEP, recovered: null };
  assert.equal(outageAround([open], 'n2', 2 * STEP, 3 * STEP, STEP, 4 * STEP), open, 'a node still down counts');
  assert.match(describeLeaderChange({ ...c, outage: open }), /n2 did not answer from .+ \(still not answering\)$/);
  assert.deepEqual(takeoversDuring([c], gaps[0]), [c], 'the restart mark of n2 lists the group it lost');
  assert.deepEqual(takeoversDuring([c], other), []);
});

test('the_tooltip_right_after_the_change_names_the_new_and_old_leader', () => {
  const v = view(writes());
  const after = describeCell(v, { k: 0, slot: 3 });
  assert.equal(after.raft, 'leader changed: group 2: term 9 → 10, leader n1 (was n2)');
  assert.equal(describeCell(v, { k: 0, slot: 4 }).raft, 'group 2, term 10, led by n1');
  assert.equal(describeCell(v, { k: 0, slot: 1 }).raft, 'group 2, term 9, led by n2');
  // The second row's change is after a gap in its own cells: still named.
  assert.match(describeCell(v, { k: 1, slot: 4 }).raft, /term 9 → 10, leader n1 \(was n2\)/);
  const gaps = coverageOutages(/** @type {any} */ ({ coverage: [{ node: 'h2', node_id: 'n2', missing: [[2 * STEP, 3 * STEP]] }] }));
  assert.match(describeCell(v, { k: 0, slot: 3 }, gaps, 10 * STEP).raft, /\(was n2\); n2 was down or restarting/);
});

test('a_live_delta_adds_its_new_terms_leaders_to_the_window', () => {
  const base = writes({ leaders: [leaders[0]] });
  const delta = { ...writes(), column_unix_ms: [5 * STEP, 6 * STEP], rows: writes().rows.map((r) => ({ ...r, values: [1, 1], raft_group_ids: [2, 2], leader_terms: [10, 11] })), leaders: [{ group: 2, term: 9, node_id: 'zz' }, { group: 2, term: 11, node_id: 'n3' }] };
  const m = appendColumns(/** @type {any} */ (base), /** @type {any} */ (delta), STEP);
  assert.deepEqual(m.leaders, [leaders[0], { group: 2, term: 11, node_id: 'n3' }], 'union, the window\'s own entry kept');
  assert.deepEqual(mergeLeaders(undefined, [leaders[1]]), [leaders[1]]);
  assert.deepEqual(mergeLeaders([leaders[1]], undefined), [leaders[1]]);
});

test('changes_too_close_to_label_apart_share_one_lane_label', async () => {
  const { laneLabels } = await import('../../crates/keyviz-admin/ui/js/render/leaders.js');
  const c = (group, at, leader) => ({ group, fromTerm: 1, toTerm: 2, at, lastBefore: at - STEP, leader, was: 'node-1', outage: null });
  const shown = { from: 0, to: 1000 * STEP };
  // 1000 px wide, 1 px per step: three groups moved together at step 100, one at step 600.
  const labels = laneLabels([c(2, 100 * STEP, 'node-2'), c(3, 101 * STEP, 'node-3'), c(4, 102 * STEP, 'node-2'), c(2, 600 * STEP, 'node-3')], shown, 1000);
  assert.deepEqual(labels.map((l) => [l.x, l.text]), [[100, 'g2 → node-2, g3 → node-3 +1'], [600, 'g2 → node-3']]);
  assert.equal(labels[0].title.split('\n').length, 3, 'every change of the run is in the hover text');
  assert.match(labels[0].title.split('\n')[2], /group 4: term 1 → 2, leader node-2 \(was node-1\)$/);
  assert.equal(laneLabels([c(2, 5 * STEP, '')], shown, 1000)[0].text, 'g2 → term 2', 'an unnamed leader: the term');
});
