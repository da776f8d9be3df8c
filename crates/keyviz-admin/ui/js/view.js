// @ts-check
/**
 * Turns a matrix plus the view state into the geometry the renderers share (pure, no DOM):
 * which rows are shown, the true-time X domain split into equal slots, and which column lands
 * in which slot. Columns are window starts aligned to the step, so slot = (t - from) / slotMs.
 */

import { mergeLeaders } from './leaders.js';
import { compareBytes, decodeKey, rowInKeyRange } from './scales.js';

/**
 * Widest buffer, in slots, whatever the screen: longer windows are coarsened so the offscreen
 * canvas stays small. Callers usually pass a tighter limit, the plot's width in device pixels.
 */
export const MAX_SLOTS = 8192;

/**
 * @typedef {object} View
 * @property {import('./types.js').Matrix} matrix
 * @property {number[]} rowIndex indices into matrix.rows of the displayed rows, in key order
 * @property {number} from domain start, unix ms (a slot boundary)
 * @property {number} to domain end, unix ms, exclusive
 * @property {number} stepMs the data step
 * @property {number} slotMs duration of one X slot (a multiple of stepMs)
 * @property {number} slots number of X slots
 * @property {Int32Array} colSlot slot of each matrix column (-1 when outside the domain)
 * @property {Int32Array} slotCol last column in each slot (-1 = no data)
 * @property {number} max largest displayed value
 * @property {Float64Array} totals per displayed row, the sum over the window
 * @property {Float64Array} slotTotals per slot, the sum over displayed rows of its busiest step
 */

/**
 * The data step: the server's step_ms, else the smallest gap between columns, else one minute.
 * @param {import('./types.js').Matrix} m
 */
export function stepOf(m) {
  if (m.step_ms && m.step_ms > 0) return m.step_ms;
  let best = Infinity;
  const c = m.column_unix_ms;
  for (let i = 1; i < c.length; i++) {
    const d = c[i] - c[i - 1];
    if (d > 0 && d < best) best = d;
  }
  return Number.isFinite(best) ? best : 60_000;
}

/**
 * @param {import('./types.js').Matrix} m
 * @param {{ from: number, to: number }} window requested window (0 = unbounded)
 * @param {import('./types.js').KeyRange|null} keys
 * @param {number} [maxSlots] at most this many X slots (clamped to 1..MAX_SLOTS): with more
 *   steps than that, each slot spans several steps and shows the hottest of them, so a spike
 *   is never dropped by scaling the picture down
 * @returns {View}
 */
export function buildView(m, window, keys, maxSlots = MAX_SLOTS) {
  const stepMs = stepOf(m);
  const cols = m.column_unix_ms;
  const first = cols.length ? cols[0] : window.from || Date.now() - 3600_000;
  const last = cols.length ? cols[cols.length - 1] + stepMs : window.to || Date.now();
  let from = Math.floor((window.from > 0 ? Math.min(window.from, first) : first) / stepMs) * stepMs;
  let to = Math.ceil((window.to > 0 ? Math.max(window.to, last) : last) / stepMs) * stepMs;
  if (window.from > 0 && window.to > 0) {
    // An explicit window wins; columns outside it (none, normally) are dropped.
    from = Math.floor(window.from / stepMs) * stepMs;
    to = Math.max(from + stepMs, Math.ceil(window.to / stepMs) * stepMs);
  }
  if (to <= from) to = from + stepMs;
  let slotMs = stepMs;
  const raw = Math.round((to - from) / stepMs);
  const limit = Math.max(1, Math.min(MAX_SLOTS, Math.floor(maxSlots)));
  if (raw > limit) slotMs = stepMs * Math.ceil(raw / limit);
  const slots = Math.max(1, Math.ceil((to - from) / slotMs));
  to = from + slots * slotMs;

  const colSlot = new Int32Array(cols.length);
  const slotCol = new Int32Array(slots).fill(-1);
  for (let j = 0; j < cols.length; j++) {
    const s = Math.floor((cols[j] - from) / slotMs);
    if (s >= 0 && s < slots) {
      colSlot[j] = s;
      slotCol[s] = j;
    } else {
      colSlot[j] = -1;
    }
  }

  /** @type {number[]} */
  const rowIndex = [];
  for (let i = 0; i < m.rows.length; i++) {
    const r = m.rows[i];
    if (!keys || rowInKeyRange(r.start, r.end, keys)) rowIndex.push(i);
  }
  const totals = new Float64Array(rowIndex.length);
  const colTotals = new Float64Array(cols.length);
  let max = 0;
  const allInside = colSlot.every((s) => s >= 0);
  for (let k = 0; k < rowIndex.length; k++) {
    const values = m.rows[rowIndex[k]].values;
    let sum = 0;
    if (allInside) {
      for (let j = 0; j < values.length; j++) {
        const v = values[j];
        sum += v;
        colTotals[j] += v;
        if (v > max) max = v;
      }
    } else {
      for (let j = 0; j < values.length; j++) {
        if (colSlot[j] < 0) continue;
        const v = values[j];
        sum += v;
        colTotals[j] += v;
        if (v > max) max = v;
      }
    }
    totals[k] = sum;
  }
  const slotTotals = new Float64Array(slots);
  for (let j = 0; j < cols.length; j++) {
    const s = colSlot[j];
    if (s >= 0 && colTotals[j] > slotTotals[s]) slotTotals[s] = colTotals[j];
  }
  return { matrix: m, rowIndex, from, to, stepMs, slotMs, slots, colSlot, slotCol, max, totals, slotTotals };
}

/**
 * Displayed rows ordered by total, busiest first (the text alternative and CSV use it).
 * @param {View} v
 * @param {number} n
 * @returns {number[]} positions in v.rowIndex
 */
export function topRows(v, n) {
  const order = Array.from(v.rowIndex.keys()).filter((k) => v.totals[k] > 0);
  order.sort((a, b) => v.totals[b] - v.totals[a] || a - b);
  return order.slice(0, n);
}

/**
 * Whether cell (row position k, column j) is flagged as a conflict: per-cell when the server
 * sent `conflicts`, else the whole row when only the row-level flag came.
 * @param {import('./types.js').MatrixRow} row
 * @param {number} j
 */
export function cellConflict(row, j) {
  if (row.conflicts && row.conflicts.length) return row.conflicts[j] === true;
  return row.conflict === true;
}

/**
 * Live-mode update: merges `delta` (a matrix for a later window that may overlap the end of
 * `base`, same series) into `base`. Columns present in both take the delta's values (the
 * newest columns can be incomplete while peers flush one after another, so the caller re-asks
 * for them); newer columns are appended; columns starting before `keepFrom` are dropped. A
 * base row absent from `delta` was idle in the delta's window: zeros there. Returns null when
 * `delta` has a bucket `base` does not know (a new route, or rows bucketed differently under
 * the row budget), or a known bucket id with another key range (the route was split or merged:
 * the server keeps the plain id for the current range and renames the old one, so appending
 * would draw new counts at the old range), or when the two have different steps (another
 * history tier); the caller must then fetch the whole window again.
 * @param {import('./types.js').Matrix} base
 * @param {import('./types.js').Matrix} delta
 * @param {number} keepFrom
 * @returns {import('./types.js').Matrix|null}
 */
export function appendColumns(base, delta, keepFrom) {
  // Another resolution (the server read another history tier for the later window): the
  // columns do not line up, so the whole window is fetched again.
  if (base.step_ms && delta.step_ms && base.step_ms !== delta.step_ms) return null;
  const known = new Map(base.rows.map((r) => [r.bucket_id, r]));
  const sameRange = (/** @type {import('./types.js').MatrixRow} */ r) => {
    const b = known.get(r.bucket_id);
    return b !== undefined && (b.start ?? null) === (r.start ?? null) && (b.end ?? null) === (r.end ?? null);
  };
  if (delta.column_unix_ms.length && !delta.rows.every(sameRange)) return null;
  /** @type {number[]} merged column timestamps, ascending */
  const columns = [];
  /** @type {{ from: 'base'|'delta', j: number }[]} where each merged column comes from */
  const source = [];
  const deltaAt = new Map(delta.column_unix_ms.map((t, j) => [t, j]));
  for (let j = 0; j < base.column_unix_ms.length; j++) {
    const t = base.column_unix_ms[j];
    if (t < keepFrom) continue;
    const dj = deltaAt.get(t);
    columns.push(t);
    source.push(dj === undefined ? { from: 'base', j } : { from: 'delta', j: dj });
  }
  const lastBase = base.column_unix_ms.length ? base.column_unix_ms[base.column_unix_ms.length - 1] : -Infinity;
  for (let j = 0; j < delta.column_unix_ms.length; j++) {
    const t = delta.column_unix_ms[j];
    if (t > lastBase && t >= keepFrom) {
      columns.push(t);
      source.push({ from: 'delta', j });
    }
  }
  /** @type {Map<string, import('./types.js').MatrixRow>} */
  const byId = new Map(delta.rows.map((r) => [r.bucket_id, r]));
  const rows = base.rows.map((r) => {
    const d = byId.get(r.bucket_id);
    /** @template T @param {(row: import('./types.js').MatrixRow) => T[]|undefined} get @param {T} fill @returns {T[]} */
    const pick = (get, fill) => source.map((c) => {
      const arr = c.from === 'base' ? get(r) : d ? get(d) : undefined;
      return arr?.[c.j] ?? fill;
    });
    const conflicts = pick((x) => x.conflicts, false);
    return {
      ...r,
      values: pick((x) => x.values, 0),
      conflicts: conflicts.includes(true) ? conflicts : undefined,
      conflict: conflicts.includes(true) || (r.conflict === true && !r.conflicts?.length) || (d?.conflict === true && !d.conflicts?.length),
      raft_group_ids: pick((x) => x.raft_group_ids, 0),
      leader_terms: pick((x) => x.leader_terms, 0),
    };
  });
  return { ...base, column_unix_ms: columns, rows, generated_at: delta.generated_at, fanout: delta.fanout ?? base.fanout, coverage: mergeCoverage(base.coverage, delta.coverage), leaders: mergeLeaders(base.leaders, delta.leaders) };
}

/**
 * The coverage gaps of both answers, per node, without duplicate runs.
 * @param {import('./types.js').NodeCoverage[]|undefined} a
 * @param {import('./types.js').NodeCoverage[]|undefined} b
 * @returns {import('./types.js').NodeCoverage[]|undefined}
 */
function mergeCoverage(a, b) {
  if (!a?.length) return b;
  if (!b?.length) return a;
  /** @type {Map<string, import('./types.js').NodeCoverage>} */
  const byNode = new Map(a.map((c) => [c.node, { ...c, missing: [...c.missing] }]));
  for (const c of b) {
    const have = byNode.get(c.node);
    if (!have) {
      byNode.set(c.node, c);
      continue;
    }
    for (const r of c.missing) if (!have.missing.some((x) => x[0] === r[0] && x[1] === r[1])) have.missing.push(r);
    have.missing.sort((x, y) => x[0] - y[0]);
  }
  return [...byNode.values()];
}

/**
 * The key range covered by `rows` (in matrix order: by start, then end). After a split or merge
 * the matrix holds overlapping incarnations of one range, so the last row need not end last:
 * the span ends at the latest end (null, unbounded, wins).
 * @param {import('./types.js').MatrixRow[]} rows
 * @returns {import('./types.js').KeyRange}
 */
export function rowsKeySpan(rows) {
  /** @type {string|null} */
  let end = rows.length ? rows[0].end ?? null : null;
  for (const r of rows) {
    const e = r.end ?? null;
    if (end === null || e === null) {
      end = null;
      break;
    }
    if (compareBytes(decodeKey(e) ?? new Uint8Array(0), decodeKey(end) ?? new Uint8Array(0)) > 0) end = e;
  }
  return { start: rows.length ? rows[0].start ?? null : null, end };
}

/**
 * Columns where a row's leader term changed: the term differs from the previous known term of
 * the same raft group in that row (cells with no identity, group or term 0, are skipped).
 * Returns [displayed row position, column] pairs in row order.
 * @param {View} view
 * @returns {[number, number][]}
 */
export function leaderChanges(view) {
  /** @type {[number, number][]} */
  const out = [];
  for (let k = 0; k < view.rowIndex.length; k++) {
    const row = view.matrix.rows[view.rowIndex[k]];
    const groups = row.raft_group_ids;
    const terms = row.leader_terms;
    if (!groups || !terms) continue;
    let lastGroup = 0;
    let lastTerm = 0;
    for (let j = 0; j < terms.length; j++) {
      const g = groups[j] ?? 0;
      const t = terms[j] ?? 0;
      if (g === 0 || t === 0 || view.colSlot[j] < 0) continue;
      if (g === lastGroup && t !== lastTerm) out.push([k, j]);
      lastGroup = g;
      lastTerm = t;
    }
  }
  return out;
}
