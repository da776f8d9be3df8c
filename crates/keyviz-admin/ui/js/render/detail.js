// @ts-check
/** The row detail panel and the "hottest key ranges" list (the heatmap's text alternative). */

import { decodeKey, formatNumber, keyLabel, toHex } from '../scales.js';
import { rowLabel } from './axes.js';
import { topRows } from '../view.js';
import { leaderOf } from '../leaders.js';

/**
 * @param {string} text
 * @param {(message: string) => void} notify
 */
async function copy(text, notify) {
  try {
    await navigator.clipboard.writeText(text);
    notify('Copied to the clipboard.');
  } catch {
    notify('Copy failed: the browser denied clipboard access. Select the text and copy it by hand.');
  }
}

/**
 * A key shown as its readable label plus hex, with a copy button per encoding.
 * @param {string|null} b64
 * @param {'start'|'end'|'first'|'last'} side
 * @param {(message: string) => void} notify
 */
function keyValue(b64, side, notify) {
  const dd = document.createElement('dd');
  const bytes = decodeKey(b64);
  const text = document.createElement('code');
  text.textContent = keyLabel(bytes, side === 'end' ? 'end' : 'start', 64);
  dd.append(text);
  if (bytes) {
    const hex = document.createElement('div');
    hex.className = 'muted';
    hex.textContent = `hex ${toHex(bytes) || '(empty)'}`;
    const copyText = document.createElement('button');
    copyText.type = 'button';
    copyText.className = 'btn secondary small';
    copyText.textContent = 'Copy';
    copyText.setAttribute('aria-label', `Copy ${side} key`);
    copyText.addEventListener('click', () => copy(new TextDecoder().decode(bytes), notify));
    const copyHex = document.createElement('button');
    copyHex.type = 'button';
    copyHex.className = 'btn secondary small';
    copyHex.textContent = 'Copy hex';
    copyHex.setAttribute('aria-label', `Copy ${side} key as hex`);
    copyHex.addEventListener('click', () => copy(toHex(bytes), notify));
    dd.append(copyText, copyHex, hex);
  }
  return dd;
}

/**
 * @param {HTMLElement} panel
 * @param {HTMLElement} list the dl inside the panel
 * @param {import('../view.js').View} view
 * @param {number} k displayed row position
 * @param {(message: string) => void} notify
 */
export function renderDetail(panel, list, view, k, notify) {
  const row = view.matrix.rows[view.rowIndex[k]];
  const items = /** @type {[string, HTMLElement|string][]} */ ([]);
  let conflicts = 0;
  let peak = 0;
  const groups = new Set();
  for (let j = 0; j < row.values.length; j++) {
    if (view.colSlot[j] < 0) continue;
    if (row.conflicts?.[j]) conflicts++;
    if (row.values[j] > peak) peak = row.values[j];
    const g = row.raft_group_ids?.[j];
    const t = row.leader_terms?.[j] ?? 0;
    const led = g && t ? leaderOf(view.matrix, g, t) : '';
    if (g) groups.add(`${g}@${t}${led ? ` (${led})` : ''}`);
  }
  const ids = row.route_ids?.length
    ? `${row.route_ids.join(', ')}${row.route_ids_truncated ? ' … (truncated)' : ''}`
    : '—';
  items.push(['Label', rowLabel(row)]);
  items.push(['Bucket id', row.bucket_id]);
  if (row.label) items.push(['Adapter', row.label]);
  items.push(['Start key', keyValue(row.start, 'start', notify)]);
  items.push(['End key', keyValue(row.end, 'end', notify)]);
  // The observed keys: real keys, where start/end may be computed sub-range boundaries.
  if (row.first_key) items.push(['First key seen', keyValue(row.first_key, 'first', notify)]);
  if (row.last_key && row.last_key !== row.first_key) items.push(['Last key seen', keyValue(row.last_key, 'last', notify)]);
  items.push(['Aggregate', row.aggregate ? 'yes (several routes merged)' : 'no']);
  items.push(['Route count', formatNumber(row.route_count)]);
  items.push(['Route ids', ids]);
  items.push([`Total ${view.matrix.series}`, formatNumber(view.totals[k])]);
  items.push(['Peak per step', formatNumber(peak)]);
  items.push(['Raft group@term (leader) seen', groups.size ? [...groups].slice(0, 12).join(', ') + (groups.size > 12 ? ' …' : '') : '—']);
  items.push(['Conflicts', row.conflicts?.length ? `${conflicts} cells` : row.conflict ? 'whole row (no per-cell detail)' : 'none']);
  const frag = document.createDocumentFragment();
  for (const [name, value] of items) {
    const dt = document.createElement('dt');
    dt.textContent = name;
    let dd = value;
    if (typeof value === 'string') {
      dd = document.createElement('dd');
      dd.textContent = value;
    }
    frag.append(dt, dd);
  }
  list.replaceChildren(frag);
  panel.hidden = false;
}

/**
 * The busiest displayed rows as a list of buttons that open the detail panel.
 * @param {HTMLOListElement} list
 * @param {import('../view.js').View} view
 * @param {(k: number) => void} open
 */
export function renderHotList(list, view, open) {
  const items = topRows(view, 10).map((k) => {
    const row = view.matrix.rows[view.rowIndex[k]];
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = `${rowLabel(row)} — ${formatNumber(view.totals[k])} ${view.matrix.series}`;
    b.title = row.bucket_id;
    b.addEventListener('click', () => open(k));
    li.append(b);
    if (row.conflict) li.append(document.createTextNode(' (conflict)'));
    return li;
  });
  if (items.length === 0) {
    const li = document.createElement('li');
    li.textContent = 'No traffic in this view.';
    items.push(li);
  }
  list.replaceChildren(...items);
}

/**
 * The automatic findings, each with its hint; hot ranges get a button that zooms to them.
 * @param {HTMLUListElement} list
 * @param {import('../diagnose.js').Finding[]} findings
 * @param {(rows: number[]) => void} zoomToRows
 */
export function renderFindings(list, findings, zoomToRows) {
  const items = findings.map((f) => {
    const li = document.createElement('li');
    li.dataset.kind = f.kind;
    const text = document.createElement('span');
    text.textContent = f.text;
    const hint = document.createElement('span');
    hint.className = 'hint';
    hint.textContent = f.hint;
    li.append(text);
    if (f.rows.length) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'btn secondary small';
      b.textContent = 'Zoom to range';
      b.addEventListener('click', () => zoomToRows(f.rows));
      li.append(document.createTextNode(' '), b);
    }
    li.append(hint);
    return li;
  });
  if (items.length === 0) {
    const li = document.createElement('li');
    li.textContent = 'No hot range, sequential-key or periodic pattern stands out in this view.';
    items.push(li);
  }
  list.replaceChildren(...items);
}
