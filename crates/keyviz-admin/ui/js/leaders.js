// @ts-check
/**
 * Who led which term (pure, no DOM): the server's `leaders` (docs/ADMIN.md, "Term leaders")
 * turned into words for leader-change ticks, tooltips and restart marks — "group 2: term 9 →
 * 10, leader n1 (was n2)", and, when the node that lost the lead was down or restarting then,
 * which outage it was.
 */

import { formatTime } from './scales.js';

/**
 * @typedef {object} TermLeader
 * @property {number} group
 * @property {number} term
 * @property {string} node_id
 */

/**
 * One leadership change of a raft group seen in the view.
 * @typedef {object} LeaderChange
 * @property {number} group
 * @property {number} fromTerm
 * @property {number} toTerm
 * @property {number} at window start of the first column under the new term
 * @property {number} lastBefore window start of the last column under the old term
 * @property {string} leader node that led the new term ("" when the server did not say)
 * @property {string} was node that led the old term ("")
 * @property {import('./viewstate.js').Outage|null} outage an outage of the old leader around
 *   the change (it went down or restarted, so the lead moved), if the page knows one
 */

/** Entries kept from an answer (the server sends at most 4096). */
export const MAX_LEADERS = 4096;

/**
 * The valid entries of a `leaders` field (advisory: anything malformed is dropped, never an
 * error), at most MAX_LEADERS.
 * @param {unknown} raw
 * @returns {TermLeader[]|undefined}
 */
export function normalizeLeaders(raw) {
  if (!Array.isArray(raw)) return undefined;
  const ok = (/** @type {unknown} */ v) => typeof v === 'number' && Number.isInteger(v) && v > 0;
  const out = raw
    .filter((/** @type {any} */ l) => l && ok(l.group) && ok(l.term) && typeof l.node_id === 'string' && l.node_id !== '')
    .slice(0, MAX_LEADERS)
    .map((/** @type {any} */ l) => ({ group: l.group, term: l.term, node_id: l.node_id }));
  return out.length ? out : undefined;
}

/**
 * The union of two answers' leaders (a live delta adds the newest terms), first one wins.
 * @param {TermLeader[]|undefined} a
 * @param {TermLeader[]|undefined} b
 * @returns {TermLeader[]|undefined}
 */
export function mergeLeaders(a, b) {
  if (!a?.length) return b;
  if (!b?.length) return a;
  const seen = new Set(a.map((l) => `${l.group}:${l.term}`));
  const out = [...a];
  for (const l of b) {
    const k = `${l.group}:${l.term}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(l);
    }
  }
  return out.slice(-MAX_LEADERS);
}

/** @type {WeakMap<object, Map<string, string>>} */
const indexCache = new WeakMap();

/**
 * The leader of (group, term) in `matrix.leaders`, "" when not named.
 * @param {{ leaders?: TermLeader[] }} matrix
 * @param {number} group
 * @param {number} term
 */
export function leaderOf(matrix, group, term) {
  const list = matrix.leaders;
  if (!list?.length) return '';
  let index = indexCache.get(list);
  if (!index) {
    index = new Map(list.map((l) => [`${l.group}:${l.term}`, l.node_id]));
    indexCache.set(list, index);
  }
  return index.get(`${group}:${term}`) ?? '';
}

/**
 * An outage of `node` that overlaps the change (from the last column of the old term, one
 * step earlier, to the first of the new, one step later): the old leader was down or
 * restarting when the lead moved. The closest one wins.
 * @param {import('./viewstate.js').Outage[]} outages
 * @param {string} node
 * @param {number} lastBefore
 * @param {number} at
 * @param {number} stepMs
 * @param {number} now
 */
export function outageAround(outages, node, lastBefore, at, stepMs, now) {
  if (!node) return null;
  const lo = lastBefore - stepMs;
  const hi = at + stepMs;
  /** @type {import('./viewstate.js').Outage|null} */
  let best = null;
  for (const o of outages) {
    if (o.nodeId !== node && o.node !== node) continue;
    const end = o.recovered ?? Math.max(o.to, now);
    if (o.from > hi || end < lo) continue;
    if (!best || Math.abs(o.from - at) < Math.abs(best.from - at)) best = o;
  }
  return best;
}

/**
 * Every leadership change in the view's columns, one per (group, new term) — rows of the
 * same group change together — ordered by time: what the ticks mark, in words.
 * @param {import('./view.js').View} view
 * @param {import('./viewstate.js').Outage[]} [outages]
 * @param {number} [now]
 * @returns {LeaderChange[]}
 */
export function leaderChangeList(view, outages = [], now = Date.now()) {
  const m = view.matrix;
  /** @type {Map<string, LeaderChange>} */
  const byTerm = new Map();
  for (let k = 0; k < view.rowIndex.length; k++) {
    const row = m.rows[view.rowIndex[k]];
    const groups = row.raft_group_ids;
    const terms = row.leader_terms;
    if (!groups || !terms) continue;
    let lastGroup = 0;
    let lastTerm = 0;
    let lastAt = 0;
    for (let j = 0; j < terms.length; j++) {
      const g = groups[j] ?? 0;
      const t = terms[j] ?? 0;
      if (g === 0 || t === 0 || view.colSlot[j] < 0) continue;
      const at = m.column_unix_ms[j];
      if (g === lastGroup && t !== lastTerm) {
        const key = `${g}:${t}`;
        const have = byTerm.get(key);
        if (!have || at < have.at) {
          byTerm.set(key, { group: g, fromTerm: lastTerm, toTerm: t, at, lastBefore: lastAt, leader: leaderOf(m, g, t), was: leaderOf(m, g, lastTerm), outage: null });
        }
      }
      lastGroup = g;
      lastTerm = t;
      lastAt = at;
    }
  }
  const list = [...byTerm.values()].sort((a, b) => a.at - b.at || a.group - b.group);
  for (const c of list) {
    if (c.was && c.was !== c.leader) c.outage = outageAround(outages, c.was, c.lastBefore, c.at, view.stepMs, now);
  }
  return list;
}

/**
 * "group 2: term 9 → 10, leader n1 (was n2)"; without names, the terms only; with the old
 * leader's outage, what happened to it.
 * @param {LeaderChange} c
 */
export function describeLeaderChange(c) {
  let text = `group ${c.group}: term ${c.fromTerm} → ${c.toTerm}`;
  if (c.leader && c.was && c.leader !== c.was) text += `, leader ${c.leader} (was ${c.was})`;
  else if (c.leader && c.was) text += `, leader ${c.leader} again (a new election, same node)`;
  else if (c.leader) text += `, leader ${c.leader}`;
  else if (c.was) text += ` (was ${c.was}; the new leader was not named by the server)`;
  if (c.outage) {
    const o = c.outage;
    text += o.gap
      ? `; ${c.was} was down or restarting from ${formatTime(o.from)} to ${formatTime(o.to)} (restarted, its columns resume at ${formatTime(o.to)})`
      : `; ${c.was} did not answer from ${formatTime(o.from)}${o.recovered !== null ? ` to ${formatTime(o.recovered)}` : ' (still not answering)'}`;
  }
  return text;
}

/**
 * "group 2, term 10, led by n1" for a write cell (the leader when the server named it).
 * @param {{ leaders?: TermLeader[] }} matrix
 * @param {number} group
 * @param {number} term
 */
export function describeTerm(matrix, group, term) {
  const leader = leaderOf(matrix, group, term);
  return `group ${group}, term ${term}${leader ? `, led by ${leader}` : ''}`;
}

/**
 * The leadership changes that moved the lead away from `node` while `outage` (of that node)
 * ran: what its restart mark adds ("meanwhile n1 took over group 2 in term 10").
 * @param {LeaderChange[]} changes
 * @param {import('./viewstate.js').Outage} outage
 */
export function takeoversDuring(changes, outage) {
  const id = outage.nodeId || outage.node;
  return changes.filter((c) => c.outage === outage || (c.was === id && c.outage !== null && c.outage.from === outage.from && c.outage.node === outage.node));
}
