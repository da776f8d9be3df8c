// @ts-check
/**
 * The view state between the loader and the renderers (pure, no DOM): which window is shown
 * (fitted to the data while the history is young), one row layout shared by every series of
 * the view, the role that served each read, and the outage log that marks, per node, when it
 * did not answer. `ViewModel` holds the mutable parts the page controller used to keep in
 * loose bindings; everything else is a plain function so node --test can check it.
 */

import { compareBytes, decodeKey } from './scales.js';
import { DEFAULT_WINDOW_MS } from './state.js';

const MINUTE = 60_000;
/**
 * Widths `auto` rounds the data's age up to (nice durations, narrowest first); an older
 * history gets the default hour.
 */
export const FIT_WIDTHS = /** @type {const} */ ([['1m', MINUTE], ['2m', 2 * MINUTE], ['5m', 5 * MINUTE], ['10m', 10 * MINUTE], ['15m', 15 * MINUTE], ['30m', 30 * MINUTE], ['1h', 60 * MINUTE]]);

/**
 * The width `auto` shows for a history `ageMs` old: the narrowest nice duration that holds
 * all of it, the default hour once the history is longer.
 * @param {number} ageMs
 * @returns {string}
 */
export function fitPreset(ageMs) {
  for (const [name, ms] of FIT_WIDTHS) if (ageMs <= ms) return name;
  return '1h';
}

/** @param {string} name a fitPreset name */
const fitMs = (name) => FIT_WIDTHS.find(([n]) => n === name)?.[1] ?? DEFAULT_WINDOW_MS;

/**
 * The window drawn for `state`: custom windows as asked; presets end at `now`; `auto` is the
 * data's age (from the first column fetched) rounded up to a preset, so a young cluster's
 * first view is not a sliver at the right edge of an empty hour.
 * @param {import('./types.js').ViewState} state
 * @param {{ from: number, to: number }} fetched the window the matrix was fetched for
 * @param {import('./types.js').Matrix|null} matrix
 * @param {number} now
 * @returns {{ from: number, to: number, fitted: string|null }}
 */
export function displayWindow(state, fetched, matrix, now) {
  if (state.range === 'custom') return { from: fetched.from, to: fetched.to, fitted: null };
  const to = Math.max(fetched.to, now);
  if (state.range === 'auto') {
    const first = matrix && matrix.column_unix_ms.length ? matrix.column_unix_ms[0] : null;
    const preset = first === null ? '1h' : fitPreset(to - first);
    return { from: to - fitMs(preset), to, fitted: preset };
  }
  return { from: fetched.from, to, fitted: null };
}

/**
 * The time extent of the data in `view`: from the first to the end of the last column where
 * any displayed row is non-zero; null when every cell is zero.
 * @param {import('./view.js').View} view
 * @returns {{ from: number, to: number }|null}
 */
export function dataExtent(view) {
  const m = view.matrix;
  let first = -1;
  let last = -1;
  for (let j = 0; j < m.column_unix_ms.length; j++) {
    if (view.colSlot[j] < 0) continue;
    for (const ri of view.rowIndex) {
      if (m.rows[ri].values[j] > 0) {
        if (first < 0) first = j;
        last = j;
        break;
      }
    }
  }
  if (first < 0) return null;
  const from = m.column_unix_ms[first];
  return { from, to: Math.max(from + view.stepMs * 4, m.column_unix_ms[last] + view.stepMs) };
}

/**
 * The series fetched for a view of `series`: the series itself first, then the other
 * direction (its rows join the layout, so a key keeps its height when the series changes),
 * then, for reads, the leader reads (so each read cell says which role served it).
 * @param {import('./types.js').Series} series
 * @returns {string[]}
 */
export function seriesPlan(series) {
  switch (series) {
    case 'writes': return ['writes', 'reads'];
    case 'reads': return ['reads', 'writes', 'leader_reads'];
    case 'write_bytes': return ['write_bytes', 'read_bytes'];
    case 'read_bytes': return ['read_bytes', 'write_bytes'];
    default: return [series];
  }
}

/** @param {string|null} b64 */
const bytesOf = (b64) => decodeKey(b64) ?? new Uint8Array(0);

/**
 * Key order of rows: by start, then end (unbounded last), then bucket id.
 * @param {import('./types.js').MatrixRow} a
 * @param {import('./types.js').MatrixRow} b
 */
function rowOrder(a, b) {
  const s = compareBytes(bytesOf(a.start), bytesOf(b.start));
  if (s !== 0) return s;
  if ((a.end ?? null) !== (b.end ?? null)) {
    if (a.end == null) return 1;
    if (b.end == null) return -1;
    const e = compareBytes(bytesOf(a.end), bytesOf(b.end));
    if (e !== 0) return e;
  }
  return a.bucket_id < b.bucket_id ? -1 : a.bucket_id > b.bucket_id ? 1 : 0;
}

/**
 * Whether [a.start, a.end) and [b.start, b.end) share a key.
 * @param {import('./types.js').MatrixRow} a
 * @param {import('./types.js').MatrixRow} b
 */
function overlaps(a, b) {
  const aEndsBeforeB = a.end != null && compareBytes(bytesOf(a.end), bytesOf(b.start)) <= 0;
  const bEndsBeforeA = b.end != null && compareBytes(bytesOf(b.end), bytesOf(a.start)) <= 0;
  return !aEndsBeforeB && !bEndsBeforeA;
}

/** @param {import('./types.js').MatrixRow} r */
const rowKey = (r) => `${r.bucket_id}\u0000${r.start ?? ''}\u0000${r.end ?? '\u0001'}`;

/**
 * One row layout for every series of the view: the rows of `main` plus every row of the
 * `others` (the same view in other series) that `main` lacks, as an all-zero row — so a key
 * range idle in this series keeps its place instead of the rows below moving up. A row of
 * another series that overlaps a different row of `main` (the server coarsened the two
 * series differently under the row budget) is left out: its keys already have a row, and a
 * key must not be drawn at two heights. When `leader` (the leader reads of the same view) is
 * given, each row gets `leader_values`: per column of `main`, how many of its reads the
 * leader served (the rest were follower reads).
 * @param {import('./types.js').Matrix} main
 * @param {import('./types.js').Matrix[]} others
 * @param {import('./types.js').Matrix|null} [leader]
 * @returns {import('./types.js').Matrix}
 */
export function composeLayout(main, others, leader = null) {
  const cols = main.column_unix_ms.length;
  const have = new Set(main.rows.map(rowKey));
  /** @type {import('./types.js').MatrixRow[]} */
  const extra = [];
  for (const o of others) {
    for (const r of o.rows) {
      const key = rowKey(r);
      if (have.has(key)) continue;
      have.add(key);
      extra.push(r);
    }
  }
  /** @type {import('./types.js').MatrixRow[]} */
  let rows = main.rows;
  if (extra.length) {
    const sorted = [...main.rows].sort(rowOrder);
    /** @type {import('./types.js').MatrixRow[]} */
    const added = [];
    for (const r of extra) {
      // Binary search for the neighbours; only they can overlap a sorted, disjoint main.
      let lo = 0;
      let hi = sorted.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (rowOrder(sorted[mid], r) < 0) lo = mid + 1;
        else hi = mid;
      }
      const clash = [sorted[lo - 1], sorted[lo]].some((n) => n && overlaps(n, r)) || added.some((a) => overlaps(a, r));
      if (clash) continue;
      added.push(r);
    }
    if (added.length) {
      const zeros = () => new Array(cols).fill(0);
      rows = [...main.rows, ...added.map((r) => ({
        ...r, values: zeros(), raft_group_ids: zeros(), leader_terms: zeros(), conflict: false, conflicts: undefined, layout_only: true,
      }))].sort(rowOrder);
    }
  }
  if (leader) {
    const at = new Map(leader.column_unix_ms.map((t, j) => [t, j]));
    const byBucket = new Map(leader.rows.map((r) => [rowKey(r), r]));
    rows = rows.map((r) => {
      const l = byBucket.get(rowKey(r));
      return { ...r, leader_values: main.column_unix_ms.map((t) => {
        const j = at.get(t);
        return l && j !== undefined ? l.values[j] ?? 0 : 0;
      }) };
    });
  }
  return rows === main.rows ? main : { ...main, rows };
}

/**
 * One outage of one node, as the page saw it: `from` is the node's last good answer before
 * it failed when the server knew it (else when the page first saw it fail), `to` the last
 * time it was seen failing, `recovered` when it answered again (null while still down).
 * @typedef {object} Outage
 * @property {string} node address as configured
 * @property {string} nodeId id, "" when unknown
 * @property {string} error the last error
 * @property {number} from unix ms
 * @property {number} to unix ms
 * @property {number|null} recovered unix ms
 * @property {boolean} entry the entry node itself (the page's own server) did not answer
 * @property {boolean} [gap] from the server's coverage: the node's history has no columns
 *   in [from, to) (it was down or restarting), whether or not this page was watching
 */

/** Outages kept per tab; the oldest go first. */
export const MAX_OUTAGES = 64;

/**
 * Folds one answer's fan-out block into the outage log (a new array; `log` is not changed).
 * A failed node opens an outage or extends its open one; a node that answers again closes
 * its open outage (`recovered`). `lastOk` gives, per node address, the server's last good
 * answer time (from GET /keyviz/nodes), which dates the start better than the page can.
 * @param {Outage[]} log
 * @param {import('./types.js').Fanout|undefined} fanout
 * @param {number} now
 * @param {Map<string, number>} [lastOk]
 * @returns {Outage[]}
 */
export function recordFanout(log, fanout, now, lastOk = new Map()) {
  const out = log.map((o) => ({ ...o }));
  // The entry node answered: its open outage (if any) ends.
  for (const o of out) if (o.entry && o.recovered === null) o.recovered = now;
  for (const n of fanout?.nodes ?? []) {
    const open = out.find((o) => !o.entry && o.node === n.node && o.recovered === null);
    if (n.ok) {
      if (open) open.recovered = now;
      continue;
    }
    if (open) {
      open.to = now;
      open.error = n.error || open.error;
      if (!open.nodeId && n.node_id) open.nodeId = n.node_id;
    } else {
      const since = lastOk.get(n.node);
      out.push({ node: n.node, nodeId: n.node_id ?? '', error: n.error || 'no answer', from: since && since < now ? since : now, to: now, recovered: null, entry: false });
    }
  }
  return out.slice(-MAX_OUTAGES);
}

/**
 * The entry node did not answer at `now` (network error): opens or extends its outage.
 * @param {Outage[]} log
 * @param {string} node
 * @param {string} error
 * @param {number} now
 * @param {number|null} lastAnswer when the entry node last answered
 * @returns {Outage[]}
 */
export function recordEntryFailure(log, node, error, now, lastAnswer) {
  const out = log.map((o) => ({ ...o }));
  const open = out.find((o) => o.entry && o.recovered === null);
  if (open) {
    open.to = now;
    open.error = error;
  } else {
    out.push({ node, nodeId: '', error, from: lastAnswer && lastAnswer < now ? lastAnswer : now, to: now, recovered: null, entry: true });
  }
  return out.slice(-MAX_OUTAGES);
}

/**
 * Folds the server's coverage gaps into the log (a new array): a gap overlapping a logged
 * gap of the same node widens it, others are added — so a gap stays on the timeline while its
 * node is down again (its coverage is then not reported) and across reloads of the tab.
 * @param {Outage[]} log
 * @param {Outage[]} gaps from coverageOutages
 * @returns {Outage[]}
 */
export function recordGaps(log, gaps) {
  const out = log.map((o) => ({ ...o }));
  for (const g of gaps) {
    const same = out.find((o) => o.gap && o.node === g.node && o.from <= g.to && g.from <= o.to);
    if (same) {
      same.from = Math.min(same.from, g.from);
      same.to = Math.max(same.to, g.to);
      same.recovered = same.to;
      if (!same.nodeId) same.nodeId = g.nodeId;
    } else {
      out.push({ ...g });
    }
  }
  return out.slice(-MAX_OUTAGES);
}

/**
 * The server's coverage gaps of `matrix` as outages (one per missing run, recovered at its end).
 * @param {import('./types.js').Matrix|null} matrix
 * @returns {Outage[]}
 */
export function coverageOutages(matrix) {
  /** @type {Outage[]} */
  const out = [];
  for (const c of matrix?.coverage ?? []) {
    for (const [from, to] of c.missing) {
      out.push({ node: c.node, nodeId: c.node_id ?? '', error: 'no columns in its history', from, to, recovered: to, entry: false, gap: true });
    }
  }
  return out;
}

/**
 * The outages overlapping [from, to), grouped per node (entry first, then by address), each
 * clipped to the window: what the band under the time axis draws.
 * @param {Outage[]} log
 * @param {number} from
 * @param {number} to
 * @param {number} now an open outage runs until now
 * @returns {{ node: string, nodeId: string, entry: boolean, spans: { from: number, to: number, outage: Outage }[] }[]}
 */
export function outageLanes(log, from, to, now) {
  /** @type {Map<string, { node: string, nodeId: string, entry: boolean, spans: { from: number, to: number, outage: Outage }[] }>} */
  const lanes = new Map();
  for (const o of log) {
    const end = o.recovered ?? Math.max(o.to, now);
    if (end <= from || o.from >= to) continue;
    const id = `${o.entry ? 0 : 1}${o.node}`;
    let lane = lanes.get(id);
    if (!lane) {
      lane = { node: o.node, nodeId: o.nodeId, entry: o.entry, spans: [] };
      lanes.set(id, lane);
    }
    if (!lane.nodeId && o.nodeId) lane.nodeId = o.nodeId;
    lane.spans.push({ from: Math.max(from, o.from), to: Math.min(to, end), outage: o });
  }
  return [...lanes.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, l]) => l);
}

/**
 * Legend ticks that do not overlap: walking left to right, a tick closer than `minGapPx` to
 * the last kept one is dropped — except the last tick (the max in view), which replaces its
 * too-close predecessor, so "100" and "104" no longer print on top of each other.
 * @param {{ x: number, text: string }[]} ticks positions in px, ascending
 * @param {(text: string) => number} widthOf label width in px
 * @param {number} [padPx] air between labels
 * @returns {{ x: number, text: string }[]}
 */
export function thinTicks(ticks, widthOf, padPx = 6) {
  /** @type {{ x: number, text: string }[]} */
  const kept = [];
  const clash = (/** @type {{ x: number, text: string }} */ a, /** @type {{ x: number, text: string }} */ b) => Math.abs(b.x - a.x) < (widthOf(a.text) + widthOf(b.text)) / 2 + padPx;
  ticks.forEach((t, i) => {
    const last = kept[kept.length - 1];
    if (!last || !clash(last, t)) kept.push(t);
    else if (i === ticks.length - 1 && kept.length > 1) kept[kept.length - 1] = t;
  });
  return kept;
}

/**
 * The mutable state of the page between loads and renders, in one place: the matrices of
 * the last load, the composed matrix and view drawn from them, the window they were fetched
 * for, the pinned cell, the row in the detail panel, the wheel gesture's window and the
 * outage log. The controller changes it only through these methods.
 */
export class ViewModel {
  constructor() {
    /** @type {import('./types.js').Matrix|null} the main series' matrix of the last load */
    this.main = null;
    /** @type {import('./types.js').Matrix[]} the other series of the view (layout) */
    this.others = [];
    /** @type {import('./types.js').Matrix|null} leader reads, for the role of each read */
    this.leader = null;
    /** @type {import('./types.js').Matrix|null} the composed matrix the view is built from */
    this.matrix = null;
    /** @type {import('./view.js').View|null} */
    this.view = null;
    /** @type {{ from: number, to: number }} */
    this.fetchedWindow = { from: 0, to: 0 };
    /** @type {string|null} which preset `auto` fitted, null for other ranges */
    this.fitted = null;
    /** @type {(import('./interact.js').Cell & { bucket: string, time: number })|null} */
    this.pinned = null;
    /** @type {string|null} bucket shown in the detail panel */
    this.detailBucket = null;
    /** @type {{ from: number, to: number }|null} window shown during a wheel gesture */
    this.wheelWindow = null;
    /** @type {unknown} */
    this.lastError = null;
    /** @type {Outage[]} */
    this.outages = [];
    /** @type {number|null} when the entry node last answered */
    this.lastAnswerAt = null;
    /** @type {import('./types.js').Fanout|undefined} the fan-out block of the last answer */
    this.lastFanout = undefined;
  }

  /**
   * Takes a new load's matrices (main first, as in `seriesPlan`) and composes the layout.
   * @param {import('./types.js').Matrix[]} matrices
   * @param {string[]} plan
   * @param {{ from: number, to: number }} fetched
   */
  setLoad(matrices, plan, fetched) {
    const leaderAt = plan.indexOf('leader_reads');
    this.main = matrices[0];
    this.leader = leaderAt > 0 ? matrices[leaderAt] ?? null : null;
    this.others = matrices.filter((m, i) => i > 0 && i !== leaderAt && m);
    this.matrix = composeLayout(this.main, this.others, this.leader);
    this.fetchedWindow = fetched;
  }

  /** The matrices of the last load in `seriesPlan` order (for live appends). */
  loaded() {
    return [this.main, ...this.others, ...(this.leader ? [this.leader] : [])].filter((m) => m !== null);
  }

  clear() {
    this.main = null;
    this.others = [];
    this.leader = null;
    this.matrix = null;
    this.view = null;
    this.pinned = null;
  }

  /**
   * Position of `bucket` among the displayed rows, -1 when it is not shown.
   * @param {string|null} bucket
   */
  rowOf(bucket) {
    const v = this.view;
    const m = this.matrix;
    if (!v || !m || bucket === null) return -1;
    return v.rowIndex.findIndex((ri) => m.rows[ri].bucket_id === bucket);
  }

  /**
   * Re-finds the pinned cell by bucket and time after a rebuild (the same row/slot index may
   * now hold another range or window); null — and unpinned — when it is gone.
   */
  repin() {
    const p = this.pinned;
    const v = this.view;
    if (!p || !v) return null;
    const k = this.rowOf(p.bucket);
    const slot = Math.floor((p.time - v.from) / v.slotMs);
    if (k >= 0 && slot >= 0 && slot < v.slots) {
      this.pinned = { ...p, k, slot };
      return this.pinned;
    }
    this.pinned = null;
    return null;
  }
}
