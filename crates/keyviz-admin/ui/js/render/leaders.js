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

/** Ticks closer than this (CSS px) to the first of a run share its label (two named, `+N` more). */
const LABEL_GAP_PX = 56;

/**
 * The short label of a tick: the group and the node that took over.
 * @param {import('../leaders.js').LeaderChange} c
 */
export function tickLabel(c) {
  return `g${c.group} → ${c.leader || `term ${c.toTerm}`}`;
}

/**
 * @param {import('../leaders.js').LeaderChange} c
 * @param {{ from: number, to: number }} shown
 * @param {number} widthPx
 */
function xOf(c, shown, widthPx) {
  const span = shown.to - shown.from;
  return span > 0 ? ((c.at - shown.from) / span) * widthPx : 0;
}

/**
 * The lane's labels (pure): one per run of ticks closer than LABEL_GAP_PX to the run's first,
 * naming the first two changes and counting the rest (`g2 → n2, g3 → n3 +1`); the title has
 * every change's sentence, one a line.
 * @param {import('../leaders.js').LeaderChange[]} changes in time order
 * @param {{ from: number, to: number }} shown
 * @param {number} widthPx
 * @returns {{ x: number, text: string, title: string }[]}
 */
export function laneLabels(changes, shown, widthPx) {
  /** @type {{ x: number, parts: string[], titles: string[] }[]} */
  const runs = [];
  for (const c of changes) {
    const x = xOf(c, shown, widthPx);
    const text = `${formatTime(c.at)}: ${describeLeaderChange(c)}`;
    const last = runs[runs.length - 1];
    if (last && x - last.x < LABEL_GAP_PX) {
      last.parts.push(tickLabel(c));
      last.titles.push(text);
    } else {
      runs.push({ x, parts: [tickLabel(c)], titles: [text] });
    }
  }
  return runs.map((r) => ({
    x: r.x,
    text: r.parts.slice(0, 2).join(', ') + (r.parts.length > 2 ? ` +${r.parts.length - 2}` : ''),
    title: r.titles.join('\n'),
  }));
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
  const inView = changes.filter((c) => c.at >= shown.from && c.at < shown.to);
  const frag = document.createDocumentFragment();
  /** @type {HTMLElement[]} */
  const notes = [];
  for (const c of inView) {
    const x = xOf(c, shown, widthPx);
    const text = `${formatTime(c.at)}: ${describeLeaderChange(c)}`;
    const tick = make('span', 'leader-tick');
    tick.style.left = `${x}px`;
    tick.title = text;
    tick.dataset.group = String(c.group);
    tick.dataset.term = String(c.toTerm);
    tick.dataset.leader = c.leader;
    tick.dataset.was = c.was;
    frag.append(tick);
    notes.push(make('li', '', text));
  }
  for (const k of laneLabels(inView, shown, widthPx)) {
    const label = make('span', 'leader-label', k.text);
    label.title = k.title;
    // Near the right edge the label goes to the left of its tick, so it is never clipped.
    if (k.x > widthPx - 2 * LABEL_GAP_PX) label.style.right = `${Math.max(0, widthPx - k.x + 3)}px`;
    else label.style.left = `${k.x + 3}px`;
    frag.append(label);
  }
  laneEl.replaceChildren(frag);
  laneEl.hidden = inView.length === 0;
  laneEl.dataset.changes = String(inView.length);
  noteEl.replaceChildren(...notes);
  noteEl.hidden = notes.length === 0;
  return inView.length;
}
