// @ts-check
/**
 * Automatic reading of the picture (pure, no DOM): names the two patterns an operator most
 * often has to spot by eye, with a hint of what to do. Heuristics, stated as such in the UI:
 * - hot range: adjacent rows that together carry far more than their fair share of the load;
 * - sequential keys: the busiest remaining row moves steadily through the key space over time
 *   (the diagonal of monotonically increasing keys such as timestamps or counters).
 */

/**
 * @typedef {object} Finding
 * @property {'hot_range'|'sequential'} kind
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
  return out;
}
