// @ts-check
/**
 * Automatic reading of the picture (pure, no DOM): names the two patterns an operator most
 * often has to spot by eye, with a hint of what to do. Heuristics, stated as such in the UI:
 * - hot range: adjacent rows that together carry far more than their fair share of the load;
 * - sequential keys: the busiest remaining row moves steadily through the key space over time
 *   (the diagonal of monotonically increasing keys such as timestamps or counters);
 * - periodic burst: some steps stand out above their neighbours at a regular interval (a cron
 *   job, a periodic range scan), named even when the picture is too coarse to show it.
 */

/**
 * @typedef {object} Finding
 * @property {'hot_range'|'sequential'|'periodic'} kind
 * @property {string} text what was seen, with numbers
 * @property {string} hint what to do about it
 * @property {number[]} rows displayed row positions involved (the range for hot_range)
 */

/** A row is "hot" when it carries at least this many times its fair share of the total. */
const HOT_FACTOR = 4;
/** ...and at least this share of the total. */
const HOT_MIN_SHARE = 0.05;
/** Share of column-to-column moves that must step forward for a "sequential" finding. */
const SEQ_MIN_FORWARD = 0.6;
/** A burst step carries at least this much more than the median of its neighbours. */
const BURST_MIN_EXCESS = 0.25;
/** Bursts needed, and the share of intervals that must match the period (±1 step). */
const BURST_MIN_COUNT = 5;
/** Periods that must fit in the window (fewer cycles are not evidence of a period). */
const BURST_MIN_CYCLES = 6;
const BURST_MIN_REGULAR = 0.7;
/**
 * A row carries the burst only if its own mean on the beat is at least this many times its
 * mean off the beat: a busy row whose noise happens to bunch on the beat has a large absolute
 * excess but no burst of its own, and naming it would stretch the range over every row between.
 */
const BURST_ROW_MIN_RATIO = 1.25;

/** @param {number[]} a */
function median(a) {
  if (a.length === 0) return 0;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

/**
 * Periodic bursts: the shortest period p (2..32 steps, at least 6 cycles in the window) and phase
 * such that at least 5 and 70 % of the steps on that phase carry ≥ 25 % more than the median of the four steps on either side, while
 * at most 30 % of the other steps do (so noise, or a load that is high every other step, is not
 * a period). Totals are over the rows not masked by `skip`; the newest column is left out (it
 * may still be filling). Returns the period in steps, the burst columns, and the contiguous
 * rows that carry the excess (each at least 1.25× its own off-beat mean on the beat, so a
 * busy row with noise bunched on the beat is not named); null when nothing is regular.
 * @param {import('./view.js').View} view
 * @param {Uint8Array} skip rows left out of the totals (a constant hot row hides small bursts)
 * @returns {{ period: number, bursts: number[], rows: number[] }|null}
 */
export function periodicBursts(view, skip) {
  const m = view.matrix;
  const n = view.rowIndex.length;
  const step = view.stepMs;
  /** @type {number[]} columns in the view, in time order, the newest left out */
  const cols = [];
  for (let j = 0; j < m.column_unix_ms.length; j++) if (view.colSlot[j] >= 0) cols.push(j);
  cols.pop();
  if (cols.length < 16 || !(step > 0)) return null;
  // Step index of each column, so a missing column does not shift the phases.
  const t0 = m.column_unix_ms[cols[0]];
  const at = cols.map((j) => Math.round((m.column_unix_ms[j] - t0) / step));
  const totals = cols.map((j) => {
    let t = 0;
    for (let k = 0; k < n; k++) if (!skip[k]) t += m.rows[view.rowIndex[k]].values[j];
    return t;
  });
  const burst = totals.map((v, i) => {
    const around = [];
    for (let d = -4; d <= 4; d++) if (d !== 0 && i + d >= 0 && i + d < totals.length) around.push(totals[i + d]);
    const base = median(around);
    return v > base * (1 + BURST_MIN_EXCESS) && v - base >= 4;
  });
  const span = at[at.length - 1] + 1;
  for (let p = 2; p <= Math.min(32, Math.floor(span / BURST_MIN_CYCLES)); p++) {
    for (let phase = 0; phase < p; phase++) {
      let on = 0;
      let onBursts = 0;
      let off = 0;
      let offBursts = 0;
      for (let i = 0; i < cols.length; i++) {
        if (at[i] % p === phase) {
          on++;
          if (burst[i]) onBursts++;
        } else {
          off++;
          if (burst[i]) offBursts++;
        }
      }
      if (onBursts < BURST_MIN_COUNT || onBursts < BURST_MIN_REGULAR * on || offBursts > 0.3 * off) continue;
      const burstCols = cols.filter((_, i) => at[i] % p === phase && burst[i]);
      const phaseCols = cols.filter((_, i) => at[i] % p === phase);
      const otherCols = cols.filter((_, i) => at[i] % p !== phase);
      // Rows carrying the excess: their mean on the phase above their mean elsewhere by at
      // least a tenth of the largest such excess (and by half a count), and by a quarter of
      // their own off-beat mean (BURST_ROW_MIN_RATIO).
      const excess = view.rowIndex.map((ri) => {
        const values = m.rows[ri].values;
        const mean = (/** @type {number[]} */ js) => js.reduce((a, j) => a + values[j], 0) / Math.max(1, js.length);
        const on = mean(phaseCols);
        const offMean = mean(otherCols);
        return on >= BURST_ROW_MIN_RATIO * offMean ? on - offMean : 0;
      });
      const top = Math.max(...excess);
      const affected = excess.map((e, k) => (e >= Math.max(0.5, 0.1 * top) ? k : -1)).filter((k) => k >= 0);
      if (affected.length === 0) return null;
      const first = affected[0];
      const last = affected[affected.length - 1];
      return { period: p, bursts: burstCols, rows: Array.from({ length: last - first + 1 }, (_, i) => first + i) };
    }
  }
  return null;
}

/**
 * @param {import('./view.js').View} view
 * @param {(k: number) => string} label label of a displayed row
 * @returns {Finding[]}
 */
export function diagnose(view, label) {
  /** @type {Finding[]} */
  const out = [];
  const n = view.rowIndex.length;
  if (n < 3) return out;
  let total = 0;
  for (const t of view.totals) total += t;
  if (!(total > 0)) return out;
  const series = view.matrix.series;

  // Hot ranges: runs of adjacent hot rows.
  const hot = new Uint8Array(n);
  for (let k = 0; k < n; k++) {
    const share = view.totals[k] / total;
    if (share >= HOT_MIN_SHARE && share >= HOT_FACTOR / n) hot[k] = 1;
  }
  for (let k = 0; k < n; k++) {
    if (!hot[k]) continue;
    let e = k;
    let sum = 0;
    while (e < n && hot[e]) sum += view.totals[e++];
    const rows = Array.from({ length: e - k }, (_, i) => k + i);
    const share = Math.round((sum / total) * 100);
    const range = e - k === 1 ? label(k) : `${label(k)} … ${label(e - 1)}`;
    out.push({
      kind: 'hot_range',
      text: `Hot key range: ${range} carries ${share}% of ${series} in this view (${e - k} of ${n} rows).`,
      hint: 'If it persists, split the range or spread its keys (e.g. a hashed or salted prefix).',
      rows,
    });
    k = e;
  }

  // Sequential keys: follow the busiest non-hot row from column to column.
  const rows = view.matrix.rows;
  const cols = view.matrix.column_unix_ms.length;
  /** @type {number[]} */
  const peaks = [];
  for (let j = 0; j < cols; j++) {
    if (view.colSlot[j] < 0) continue;
    let best = -1;
    let bestV = 0;
    let sum = 0;
    let count = 0;
    for (let k = 0; k < n; k++) {
      if (hot[k]) continue;
      const v = rows[view.rowIndex[k]].values[j];
      sum += v;
      count++;
      if (v > bestV) {
        bestV = v;
        best = k;
      }
    }
    // Only columns with a clear peak say anything about where the load is.
    if (best >= 0 && count > 0 && bestV >= 4 * (sum / count)) peaks.push(best);
  }
  if (peaks.length >= 8) {
    let forward = 0;
    let moves = 0;
    for (let i = 1; i < peaks.length; i++) {
      const d = peaks[i] - peaks[i - 1];
      if (d === 0) continue;
      moves++;
      // A step forward, or the wrap from the last rows back to the first.
      if ((d > 0 && d <= Math.max(2, n / 16)) || (d < 0 && peaks[i] < n / 8 && peaks[i - 1] > n - n / 8)) forward++;
    }
    if (moves >= 8 && forward / moves >= SEQ_MIN_FORWARD) {
      out.push({
        kind: 'sequential',
        text: `Sequential key pattern: the busiest range moves forward through the keys over time (${Math.round((forward / moves) * 100)}% of ${moves} moves step forward).`,
        hint: 'Typical of monotonically increasing keys (timestamps, counters): all new load lands on one range at a time. Consider a hashed or reversed key prefix.',
        rows: [],
      });
    }
  }
  // Over the non-hot rows first (a constant hot row would drown a small burst), then over
  // all rows (the burst may land in a hot row, as the demo's scan does).
  const p = periodicBursts(view, hot) ?? periodicBursts(view, new Uint8Array(n));
  if (p) {
    const every = p.period * view.stepMs;
    const secs = every % 60_000 === 0 ? `${every / 60_000} min` : `${every / 1000} s`;
    const range = p.rows.length === 1 ? label(p.rows[0]) : `${label(p.rows[0])} … ${label(p.rows[p.rows.length - 1])}`;
    out.push({
      kind: 'periodic',
      text: `Periodic burst: every ${secs}, ${p.bursts.length} steps stand out above their neighbours on ${range} (${p.rows.length} rows).`,
      hint: 'Typical of a scheduled job or a periodic range scan. Raise the brightness or zoom into a few periods to see each burst.',
      rows: p.rows,
    });
  }
  return out;
}
