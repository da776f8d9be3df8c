// @ts-check
/** What one heatmap cell means, in words (pure, no DOM): the tooltip and announcer text. */

import { decodeKey, formatDuration, formatNumber, formatTime, keyLabel } from './scales.js';
import { cellConflict } from './view.js';
import { describeLeaderChange, describeTerm, leaderOf, outageAround } from './leaders.js';

/**
 * Describes the cell at displayed row `c.k`, slot `c.slot`. With several steps per slot the
 * busiest step is described (and said to be). A write cell names its term's leader when the
 * server did; right after a leader change it says who took over from whom, and whether the
 * old leader was down or restarting then (from `outages`, the page's outage log).
 * @param {import('./view.js').View} view
 * @param {import('./interact.js').Cell} c
 * @param {import('./viewstate.js').Outage[]} [outages]
 * @param {number} [now]
 * @returns {import('./render/tooltip.js').CellInfo}
 */
export function describeCell(view, c, outages = [], now = Date.now()) {
  const matrix = view.matrix;
  const row = matrix.rows[view.rowIndex[c.k]];
  const t0 = view.from + c.slot * view.slotMs;
  let value = -1;
  let col = -1;
  for (let j = 0; j < row.values.length; j++) {
    if (view.colSlot[j] === c.slot && row.values[j] >= value) {
      value = row.values[j];
      col = j;
    }
  }
  const group = col >= 0 ? row.raft_group_ids?.[col] ?? 0 : 0;
  const term = col >= 0 ? row.leader_terms?.[col] ?? 0 : 0;
  const conflict = col >= 0 && cellConflict(row, col);
  // The previous known term of the same group in this row, to say when leadership changed.
  let prevTerm = 0;
  let prevAt = 0;
  for (let j = col - 1; j >= 0 && col >= 0; j--) {
    if ((row.raft_group_ids?.[j] ?? 0) === group && (row.leader_terms?.[j] ?? 0) !== 0) {
      prevTerm = row.leader_terms?.[j] ?? 0;
      prevAt = matrix.column_unix_ms[j];
      break;
    }
  }
  const changed = group !== 0 && term !== 0 && prevTerm !== 0 && prevTerm !== term;
  const series = /** @type {string} */ (matrix.series);
  const isRead = series === 'reads' || series === 'read_bytes' || series === 'leader_reads' || series === 'follower_reads';
  /** @type {string} */
  let raft;
  if (isRead) {
    // Reads are not in the Raft log, so they carry no term: say which role served them.
    const g = group ? `group ${group}, ` : '';
    const leader = col >= 0 ? row.leader_values?.[col] : undefined;
    if (col < 0) raft = '—';
    else if (series === 'leader_reads') raft = `${g}served by the leader`;
    else if (series === 'follower_reads') raft = `${g}served by followers`;
    else if (leader !== undefined) raft = `${g}served by the leader: ${formatNumber(leader)}, by followers: ${formatNumber(Math.max(0, value - leader))}`;
    else raft = `${g}served by the leader or followers (the split is kept for read counts, not bytes)`;
  } else {
    if (!group) raft = '—';
    else if (changed) {
      const at = matrix.column_unix_ms[col];
      const leader = leaderOf(matrix, group, term);
      const was = leaderOf(matrix, group, prevTerm);
      const outage = was && was !== leader ? outageAround(outages, was, prevAt, at, view.stepMs, now) : null;
      raft = `leader changed: ${describeLeaderChange({ group, fromTerm: prevTerm, toTerm: term, at, lastBefore: prevAt, leader, was, outage })}`;
    } else raft = describeTerm(matrix, group, term);
  }
  return {
    k: c.k,
    slot: c.slot,
    col,
    time: `${formatTime(t0)} → ${formatTime(t0 + view.slotMs)} (${formatDuration(view.slotMs)})`,
    keys: `${keyLabel(decodeKey(row.start), 'start', 40)} → ${keyLabel(decodeKey(row.end), 'end', 40)}`,
    value: col < 0 ? 'no data for this window'
      : row.layout_only ? `0 ${matrix.series} (this range has traffic in another series only; its row stays in place)`
      : `${formatNumber(value)} ${matrix.series}${view.slotMs !== view.stepMs ? ` (busiest ${formatDuration(view.stepMs)} step of this pixel column)` : ''}`,
    raft,
    readRole: isRead,
    conflict: conflict ? (row.conflicts?.length ? 'yes: nodes disagree for the same group and term' : 'yes (row-level flag)') : 'no',
    bucket: `${row.bucket_id}${row.aggregate ? ` (aggregate of ${row.route_count} routes)` : ''}`,
  };
}
