// @ts-check
/**
 * Outages on the timeline: one thin lane per node that did not answer during the window,
 * under the time axis, with a hatched span where it was down (hover text: node, id, error,
 * when) and a mark where it answered again; plus one sentence per outage under the axis, so
 * the trace stays readable (and announced) after the degraded banner is gone.
 */

import { make } from '../dom.js';
import { formatTime } from '../scales.js';
import { outageLanes } from '../viewstate.js';
import { takeoversDuring } from '../leaders.js';

/**
 * @param {import('../viewstate.js').Outage} o
 */
function nodeName(o) {
  if (o.entry) return `entry node ${o.node}`;
  return o.nodeId ? `${o.nodeId} (${o.node})` : o.node;
}

/**
 * Words for one outage: who, from when to when, the error, and whether it answered again.
 * @param {import('../viewstate.js').Outage} o
 */
export function describeOutage(o) {
  if (o.gap) return `${nodeName(o)} has no columns from ${formatTime(o.from)} to ${formatTime(o.to)}: it was down or restarting (its history has a gap there; the other nodes' counts fill the cells)`;
  const until = o.recovered !== null ? `${formatTime(o.recovered)}, then answered again` : `${formatTime(o.to)} (still not answering)`;
  return `${nodeName(o)} did not answer from ${formatTime(o.from)} to ${until}: ${o.error}`;
}

/**
 * @param {HTMLElement} lanesEl the strip under the time axis
 * @param {HTMLElement} noteEl the sentence list under it
 * @param {import('../viewstate.js').Outage[]} log
 * @param {{ from: number, to: number }} shown the window drawn
 * @param {number} widthPx
 * @param {number} now
 * @param {import('../leaders.js').LeaderChange[]} [changes] leader changes in view: a restart
 *   mark says which groups the node lost the lead of while it was down
 * @returns {number} how many lanes were drawn
 */
export function renderOutages(lanesEl, noteEl, log, shown, widthPx, now, changes = []) {
  const lanes = outageLanes(log, shown.from, shown.to, now);
  const span = shown.to - shown.from;
  const x = (/** @type {number} */ t) => ((t - shown.from) / span) * widthPx;
  const frag = document.createDocumentFragment();
  /** @type {HTMLElement[]} */
  const notes = [];
  for (const lane of lanes) {
    const row = make('div', 'outage-lane');
    row.dataset.node = lane.nodeId || lane.node;
    const name = make('span', 'outage-name', lane.entry ? 'entry' : lane.nodeId || lane.node);
    row.append(name);
    for (const s of lane.spans) {
      const bar = make('span', 'outage-span');
      bar.style.left = `${x(s.from)}px`;
      bar.style.width = `${Math.max(3, x(s.to) - x(s.from))}px`;
      bar.title = describeOutage(s.outage);
      row.append(bar);
      if (s.outage.recovered !== null && s.outage.recovered <= shown.to) {
        const back = make('span', 'outage-back');
        const bx = x(s.outage.recovered);
        back.style.left = `${bx}px`;
        const moved = takeoversDuring(changes, s.outage)
          .map((c) => `group ${c.group} to ${c.leader || `term ${c.toTerm}`}`);
        const lost = moved.length ? `; meanwhile the lead of ${moved.join(', ')} moved away from it` : '';
        back.title = (s.outage.gap
          ? `${nodeName(s.outage)} restarted: its columns resume at ${formatTime(s.outage.recovered)}`
          : `${nodeName(s.outage)} answered again at ${formatTime(s.outage.recovered)} (restarted or reachable again)`) + lost;
        back.dataset.node = lane.nodeId || lane.node;
        // The mark names the node on the picture, not only in its hover text.
        const label = make('span', 'outage-back-label', `↻ ${lane.entry ? 'entry' : lane.nodeId || lane.node}`);
        label.title = back.title;
        if (bx > widthPx - 48) label.style.right = `${Math.max(0, widthPx - bx + 3)}px`;
        else label.style.left = `${bx + 3}px`;
        row.append(back, label);
      }
      notes.push(make('li', '', describeOutage(s.outage)));
    }
    frag.append(row);
  }
  lanesEl.replaceChildren(frag);
  lanesEl.hidden = lanes.length === 0;
  lanesEl.dataset.lanes = String(lanes.length);
  noteEl.replaceChildren(...notes);
  noteEl.hidden = notes.length === 0;
  return lanes.length;
}
