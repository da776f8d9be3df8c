// @ts-check
/**
 * Leader changes named on the timeline: a lane under the time axis with one cyan tick per
 * (group, new term) in the window, labelled with the node that took over (`g2 → n1`, hover:
 * the whole sentence), and one sentence per change under the plot ("group 2: term 9 → 10,
 * leader n1 (was n2)"), so the heatmap's cyan cell marks are explained in words.
 */

import { make } from '../dom.js';
import { formatTime } from '../scales.js';
import { describeLeaderChange } from '../leaders.js';

/** Labels closer than this (CSS px) to the previous one are left out (the tick stays). */
const LABEL_GAP_PX = 56;

/**
 * The short label of a tick: the group and the node that took over.
 * @param {import('../leaders.js').LeaderChange} c
 */
export function tickLabel(c) {
  return `g${c.group} → ${c.leader || `term ${c.toTerm}`}`;
}

/**
 * @param {HTMLElement} laneEl the lane under the time axis
 * @param {HTMLElement} noteEl the sentence list under the plot
 * @param {import('../leaders.js').LeaderChange[]} changes from leaderChangeList
 * @param {{ from: number, to: number }} shown the window drawn
 * @param {number} widthPx
 * @returns {number} how many ticks were drawn
 */
export function renderLeaderChanges(laneEl, noteEl, changes, shown, widthPx) {
  const span = shown.to - shown.from;
  const inView = changes.filter((c) => c.at >= shown.from && c.at < shown.to);
  const frag = document.createDocumentFragment();
  /** @type {HTMLElement[]} */
  const notes = [];
  let lastLabel = -Infinity;
  for (const c of inView) {
    const x = span > 0 ? ((c.at - shown.from) / span) * widthPx : 0;
    const text = `${formatTime(c.at)}: ${describeLeaderChange(c)}`;
    const tick = make('span', 'leader-tick');
    tick.style.left = `${x}px`;
    tick.title = text;
    tick.dataset.group = String(c.group);
    tick.dataset.term = String(c.toTerm);
    tick.dataset.leader = c.leader;
    tick.dataset.was = c.was;
    frag.append(tick);
    if (x - lastLabel >= LABEL_GAP_PX) {
      const label = make('span', 'leader-label', tickLabel(c));
      label.title = text;
      // Near the right edge the label goes to the left of its tick, so it is never clipped.
      if (x > widthPx - LABEL_GAP_PX) {
        label.style.right = `${Math.max(0, widthPx - x + 3)}px`;
      } else {
        label.style.left = `${x + 3}px`;
      }
      frag.append(label);
      lastLabel = x;
    }
    notes.push(make('li', '', text));
  }
  laneEl.replaceChildren(frag);
  laneEl.hidden = inView.length === 0;
  laneEl.dataset.changes = String(inView.length);
  noteEl.replaceChildren(...notes);
  noteEl.hidden = notes.length === 0;
  return inView.length;
}
