// @ts-check
/**
 * Drawing of hot keys (DOM only, no fetching): the "Top keys" table of a selected cell or row
 * and the "Hottest keys" list of the view, with what the numbers guarantee (bounds, floor,
 * sampling, capture mode) and which nodes are missing. Keys are user data: every text goes
 * through textContent.
 */

import { decodeKey, encodeKey, formatNumber } from '../scales.js';

/**
 * How a key is copied: its text when it is printable UTF-8 (no control characters), else its
 * base64 (the wire encoding, which the API's key_start/key_end also take).
 * @param {string} b64
 * @returns {{ text: string, kind: 'text'|'base64' }}
 */
export function copyForm(b64) {
  const bytes = decodeKey(b64);
  if (!bytes) return { text: b64, kind: 'base64' };
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    if (text.length > 0 && !/[\u0000-\u001f\u007f-\u009f]/.test(text)) return { text, kind: 'text' };
  } catch {
    // Not UTF-8: base64 below.
  }
  return { text: encodeKey(bytes), kind: 'base64' };
}

/**
 * @param {string} text
 * @param {string} what
 * @param {(message: string) => void} notify
 */
async function copy(text, what, notify) {
  try {
    await navigator.clipboard.writeText(text);
    notify(`Copied ${what} to the clipboard.`);
  } catch {
    notify(`Copy failed: the browser denied clipboard access. The key is: ${text}`);
  }
}

/**
 * The copy button of one key; its visible text says which form is copied.
 * @param {import('../types.js').HotKey} k
 * @param {(message: string) => void} notify
 */
function copyButton(k, notify) {
  const form = copyForm(k.key);
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'btn secondary small copy-key';
  b.textContent = form.kind === 'text' ? 'Copy' : 'Copy base64';
  b.dataset.copy = form.kind;
  b.title = form.kind === 'text' ? 'Copies the key as text' : 'The key is not printable text: copies its base64';
  b.setAttribute('aria-label', `Copy key ${k.preview || k.key}${form.kind === 'text' ? '' : ' as base64'}`);
  b.addEventListener('click', () => copy(form.text, form.kind === 'text' ? `key ${k.preview}` : `the base64 of key ${k.preview}`, notify));
  return b;
}

/** @param {number} share */
export function formatShare(share) {
  if (!(share > 0)) return '0 %';
  const p = share * 100;
  return `${p >= 10 ? p.toFixed(0) : p >= 0.1 ? p.toFixed(1) : '<0.1'} %`;
}

/**
 * "1,234 (1,200..1,250)", or "1,234 (exact)" when the bounds meet.
 * @param {import('../types.js').HotKey} k
 */
export function formatBounds(k) {
  if (k.lower === k.upper) return `${formatNumber(k.estimate)} (exact)`;
  return `${formatNumber(k.estimate)} (${formatNumber(k.lower)}..${formatNumber(k.upper)})`;
}

/**
 * The key's label: the server's printable preview, marked when cut at 256 bytes.
 * @param {import('../types.js').HotKey} k
 */
function keyCode(k) {
  const code = document.createElement('code');
  code.className = 'hk-key';
  code.textContent = `${k.preview || k.key}${k.truncated ? ' (cut at 256 bytes)' : ''}`;
  code.title = `base64 ${k.key}`;
  return code;
}

/**
 * Sentences about what the answer guarantees: the floor, the sampling, the capture mode.
 * @param {import('../types.js').HotKeys} h
 * @returns {string[]}
 */
export function explainHotKeys(h) {
  const s = h.series;
  const out = [];
  if (h.mode === 'off') out.push('Hot-key capture is off on this cluster (--hot-keys=off): no key names are kept.');
  if (h.mode === 'hashed') out.push('Keys are shown hashed (--hot-keys=hashed): the kept prefix, then a keyed hash of the rest.');
  if (h.total === 0) {
    out.push(`No ${s} in this range and window.`);
    return out;
  }
  if (h.keys.length === 0) out.push(`No key was captured for these ${formatNumber(h.total)} ${s}.`);
  if (h.floor > 0) out.push(`No other key here has more than ${formatNumber(h.floor)} ${s} (an upper bound on every key not listed).`);
  else if (h.keys.length > 0) out.push('No other key has any: these are all the keys of this range and window.');
  out.push(h.sampled
    ? 'Sampled: the capture counted a sample of this traffic, so lower..upper are statistical bounds (they hold with high confidence, not always) and the estimate is scaled up from the sample.'
    : 'Not sampled: every true count lies between its lower and upper bound; the estimate is the best single value, and "exact" means the bounds meet.');
  return out;
}

/**
 * Per-node problems: nodes that did not answer, nodes whose hot keys were left out or are
 * missing (their warnings), and the merge's own warnings.
 * @param {import('../types.js').HotKeys} h
 * @returns {string[]}
 */
export function nodeProblems(h) {
  const out = [];
  const f = h.fanout;
  for (const n of f?.nodes ?? []) {
    const name = n.node_id ? `${n.node} (${n.node_id})` : n.node;
    if (!n.ok) out.push(`${name}: no hot keys — ${n.error || 'no answer'}`);
    for (const w of n.warnings ?? []) out.push(`${name}: ${w.code}${w.detail ? ` — ${w.detail}` : ''}`);
  }
  for (const w of h.warnings ?? []) out.push(w);
  if (f && f.responded < f.expected && out.length === 0) out.push(`Only ${f.responded} of ${f.expected} nodes answered.`);
  return out;
}

/**
 * The "Top keys" table of a selection.
 * @param {{ table: HTMLTableSectionElement, total: HTMLElement, notes: HTMLUListElement, problems: HTMLUListElement }} el
 * @param {import('../types.js').HotKeys} h
 * @param {(message: string) => void} notify
 */
export function renderTopKeys(el, h, notify) {
  const rows = h.keys.map((k, i) => {
    const tr = document.createElement('tr');
    const rank = document.createElement('td');
    rank.textContent = String(i + 1);
    const key = document.createElement('td');
    key.append(keyCode(k));
    const est = document.createElement('td');
    est.className = 'num';
    est.textContent = formatBounds(k);
    const share = document.createElement('td');
    share.className = 'num';
    share.textContent = formatShare(k.share);
    const act = document.createElement('td');
    act.append(copyButton(k, notify));
    tr.append(rank, key, est, share, act);
    return tr;
  });
  el.table.replaceChildren(...rows);
  el.total.textContent = `Total in this range and window: ${formatNumber(h.total)} ${h.series} (exact); shares are of this total.`;
  renderNotes(el.notes, explainHotKeys(h));
  renderNotes(el.problems, nodeProblems(h));
  el.problems.hidden = el.problems.childElementCount === 0;
}

/**
 * @param {HTMLUListElement} list
 * @param {string[]} lines
 */
function renderNotes(list, lines) {
  list.replaceChildren(...lines.map((t) => {
    const li = document.createElement('li');
    li.textContent = t;
    return li;
  }));
}

/**
 * The "Hottest keys" list of the view (text alternative next to "Hottest key ranges").
 * @param {{ list: HTMLOListElement, notes: HTMLUListElement, problems: HTMLUListElement }} el
 * @param {import('../types.js').HotKeys} h
 * @param {(message: string) => void} notify
 */
export function renderHottestKeys(el, h, notify) {
  const items = h.keys.map((k) => {
    const li = document.createElement('li');
    const text = document.createElement('span');
    text.textContent = ` — ${formatBounds(k)} ${h.series}, ${formatShare(k.share)}`;
    li.append(keyCode(k), text, document.createTextNode(' '), copyButton(k, notify));
    return li;
  });
  if (items.length === 0) {
    const li = document.createElement('li');
    li.textContent = h.total === 0 ? `No ${h.series} in this view.` : 'No key was captured in this view.';
    items.push(li);
  }
  el.list.replaceChildren(...items);
  renderNotes(el.notes, explainHotKeys(h));
  renderNotes(el.problems, nodeProblems(h));
  el.problems.hidden = el.problems.childElementCount === 0;
}

/**
 * An error or "loading" line in place of a list.
 * @param {HTMLOListElement|HTMLTableSectionElement} list
 * @param {string} text
 */
export function renderHotKeysMessage(list, text) {
  const isTable = list instanceof HTMLTableSectionElement;
  const item = document.createElement(isTable ? 'tr' : 'li');
  if (isTable) {
    const td = document.createElement('td');
    td.colSpan = 5;
    td.textContent = text;
    item.append(td);
  } else {
    item.textContent = text;
  }
  list.replaceChildren(item);
}
