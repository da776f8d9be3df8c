// @ts-check
/**
 * Everything drawn over or around the heatmap that is not the heat itself: conflict hatching,
 * the brush rectangle, the selected-cell outline, the degraded banner and the warnings list.
 */

import { cellConflict, leaderChanges } from '../view.js';
import { pixelRatio, prepareCanvas } from './canvas.js';

/**
 * Hatches conflicting cells on the overlay canvas (diagonal stripes, so it reads in any palette
 * and in greyscale). Returns how many cells were hatched; a row-level flag with no per-cell
 * array hatches every slot of the row that has data.
 * @param {HTMLCanvasElement} canvas
 * @param {import('../view.js').View} view
 * @param {number} cssWidth
 * @param {number} cssHeight
 * @param {{ x: number, y: number, w: number, h: number }|null} src visible part of the buffer, in cells
 * @returns {{ cells: number, rows: number }}
 */
export function drawHatching(canvas, view, cssWidth, cssHeight, src) {
  const prepared = prepareCanvas(canvas, cssWidth, cssHeight);
  if (!prepared) return { cells: 0, rows: 0 };
  const { ctx, bw, bh, dpr } = prepared;
  const s = src ?? { x: 0, y: 0, w: view.slots, h: view.rowIndex.length };
  const sx = bw / s.w;
  const sy = bh / s.h;
  const tile = document.createElement('canvas');
  tile.width = tile.height = Math.max(6, Math.round(6 * dpr));
  const tctx = tile.getContext('2d');
  if (tctx) {
    tctx.strokeStyle = 'rgba(255,255,255,0.95)';
    tctx.lineWidth = Math.max(1, dpr);
    tctx.beginPath();
    tctx.moveTo(0, tile.height);
    tctx.lineTo(tile.width, 0);
    tctx.stroke();
    tctx.strokeStyle = 'rgba(0,0,0,0.9)';
    tctx.beginPath();
    tctx.moveTo(0, tile.height / 2);
    tctx.lineTo(tile.width / 2, 0);
    tctx.stroke();
  }
  const pattern = ctx.createPattern(tile, 'repeat');
  if (!pattern) return { cells: 0, rows: 0 };
  ctx.fillStyle = pattern;
  let cells = 0;
  let rows = 0;
  const m = view.matrix;
  for (let k = 0; k < view.rowIndex.length; k++) {
    const row = m.rows[view.rowIndex[k]];
    if (!row.conflict && !(row.conflicts && row.conflicts.includes(true))) continue;
    rows++;
    const y0 = (k - s.y) * sy;
    if (y0 + sy < 0 || y0 > bh) continue;
    // Merge runs of adjacent conflicting slots into one rectangle.
    let runStart = -1;
    let last = -2;
    const flush = () => {
      if (runStart < 0) return;
      const x0 = (runStart - s.x) * sx;
      const x1 = (last + 1 - s.x) * sx;
      // At least 2 device px so a single conflicting cell in a dense view stays visible.
      ctx.fillRect(Math.floor(x0), Math.floor(y0), Math.max(2, Math.ceil(x1 - x0)), Math.max(2, Math.ceil(sy)));
      runStart = -1;
    };
    for (let j = 0; j < row.values.length; j++) {
      const slot = view.colSlot[j];
      if (slot < 0 || !cellConflict(row, j)) continue;
      cells++;
      if (slot !== last + 1 && slot !== last) flush();
      if (runStart < 0) runStart = slot;
      last = slot;
    }
    flush();
  }
  canvas.dataset.conflictCells = String(cells);
  canvas.dataset.conflictRows = String(rows);
  return { cells, rows };
}

/**
 * Marks leadership changes on the overlay canvas (already sized by drawHatching): a short
 * cyan bar with a dark edge at the left of each cell whose leader term differs from the
 * previous one of the same raft group — where a hotspot may move or pause during an election.
 * Returns how many were drawn (also left in `data-leader-changes`).
 * @param {HTMLCanvasElement} canvas
 * @param {import('../view.js').View} view
 * @param {{ x: number, y: number, w: number, h: number }|null} src visible part of the buffer, in cells
 */
export function drawLeaderChanges(canvas, view, src) {
  const ctx = canvas.getContext('2d');
  const changes = leaderChanges(view);
  canvas.dataset.leaderChanges = String(changes.length);
  if (!ctx || changes.length === 0) return changes.length;
  const dpr = pixelRatio();
  const s = src ?? { x: 0, y: 0, w: view.slots, h: view.rowIndex.length };
  const sx = canvas.width / s.w;
  const sy = canvas.height / s.h;
  const w = Math.max(2, Math.round(2 * dpr));
  for (const [k, j] of changes) {
    const x = (view.colSlot[j] - s.x) * sx;
    const y = (k - s.y) * sy;
    const h = Math.max(3, sy);
    ctx.fillStyle = 'rgba(0,0,0,0.85)';
    ctx.fillRect(Math.floor(x) - 1, Math.floor(y), w + 2, Math.ceil(h));
    ctx.fillStyle = '#27e1f5';
    ctx.fillRect(Math.floor(x), Math.floor(y), w, Math.ceil(h));
  }
  return changes.length;
}

/**
 * @param {HTMLElement} el
 * @param {{ x: number, y: number, w: number, h: number }|null} rect CSS px within the plot
 */
export function showRect(el, rect) {
  if (!rect) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  el.style.left = `${rect.x}px`;
  el.style.top = `${rect.y}px`;
  el.style.width = `${Math.max(1, rect.w)}px`;
  el.style.height = `${Math.max(1, rect.h)}px`;
}

/**
 * The degraded banner: shown when some nodes of the cluster did not answer; names each one and
 * its error so the operator knows which part of the picture is missing.
 * @param {HTMLElement} el
 * @param {import('../types.js').Fanout|undefined} fanout
 */
export function renderDegradedBanner(el, fanout) {
  const failed = fanout ? fanout.nodes.filter((n) => !n.ok) : [];
  if (!fanout || failed.length === 0) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  const title = document.createElement('strong');
  title.textContent = `Degraded: ${failed.length} of ${fanout.expected} nodes did not answer.`;
  const explain = document.createElement('span');
  explain.textContent = ' The heatmap shows only the nodes that responded; ranges led by the missing nodes may read low or zero, or be missing. Check the nodes below, then refresh.';
  const list = document.createElement('ul');
  for (const n of failed) {
    const li = document.createElement('li');
    const name = document.createElement('code');
    name.textContent = n.node_id ? `${n.node} (${n.node_id})` : n.node;
    li.append(name, document.createTextNode(`: ${n.error || 'no answer'}`));
    list.append(li);
  }
  el.replaceChildren(title, explain, list);
  el.hidden = false;
}

const WARNING_TEXT = /** @type {Record<string, string>} */ ({
  catalog_divergence: 'nodes disagree about a bucket’s key range; its row uses the first node’s view',
  self_alias: 'a configured peer is this node itself; it was skipped',
  step_mismatch: 'a node uses a different step; its columns were aligned to ours',
});

/**
 * Lists fan-out warnings (catalog divergence, self alias, …) by node.
 * @param {HTMLElement} el
 * @param {import('../types.js').Fanout|undefined} fanout
 */
export function renderWarnings(el, fanout) {
  const items = [];
  for (const n of fanout?.nodes ?? []) {
    for (const w of n.warnings ?? []) {
      const li = document.createElement('li');
      const code = document.createElement('code');
      code.textContent = w.code;
      const what = WARNING_TEXT[w.code] ?? 'warning';
      const where = w.bucket_id ? ` [${w.bucket_id}]` : '';
      const node = n.node_id ? `${n.node} (${n.node_id})` : n.node;
      li.append(code, document.createTextNode(` from ${node}${where}: ${what}. ${w.detail}`));
      items.push(li);
    }
  }
  if (items.length === 0) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  const title = document.createElement('strong');
  title.textContent = `Warnings (${items.length})`;
  const list = document.createElement('ul');
  list.append(...items);
  el.replaceChildren(title, list);
  el.hidden = false;
}

/**
 * The cluster members table from GET /keyviz/nodes: who is in the cluster, whether the last
 * fan-out reached them, and the last error. Unknown shapes render as "unavailable".
 * @param {HTMLElement} el the tbody
 * @param {HTMLElement} caption
 * @param {unknown} data
 */
export function renderNodes(el, caption, data) {
  const d = /** @type {any} */ (data);
  const nodes = Array.isArray(d?.nodes) ? d.nodes : [];
  const rows = nodes.map((/** @type {any} */ n) => {
    const tr = document.createElement('tr');
    const status = n.self ? 'this node' : n.self_alias ? 'alias of this node' : n.reachable === true ? 'reachable' : n.reachable === false ? 'unreachable' : 'not contacted yet';
    const cells = [
      String(n.node ?? '?'),
      String(n.node_id ?? '—'),
      status,
      n.last_elapsed_ms != null ? `${n.last_elapsed_ms} ms` : '—',
      n.last_error ? String(n.last_error) : '',
    ];
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.append(td);
    }
    if (n.reachable === false) tr.className = 'bad';
    return tr;
  });
  el.replaceChildren(...rows);
  caption.textContent = nodes.length ? `${nodes.length} members known to ${d?.node_id ?? 'this node'}` : 'Membership is unavailable on this server.';
}
