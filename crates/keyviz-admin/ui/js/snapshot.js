// @ts-check
/**
 * The incident snapshot: one self-contained HTML file built in the page and downloaded as a
 * Blob (no request, nothing the page's CSP forbids). The file has no script and no external
 * reference: its CSS is inline and the heatmap is the exported image (legend and labels drawn
 * in) as a PNG data URL; its own CSP (`default-src 'none'`) keeps it inert when opened.
 * Sections and element ids follow `keyviz snapshot` (src/snapshot_cmd.rs) so the two files
 * read the same: series, window, keys, heatmap, ranges, hot-keys, nodes, query.
 */

import { rowLabel } from './render/axes.js';
import { decodeKey, formatNumber, keyLabel } from './scales.js';

/** @param {string} s */
export function esc(s) {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c] ?? c));
}

/** @param {number} ms */
const iso = (ms) => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');

const STYLE = `body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#16181d;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.meta{color:#5b6270}.mono,pre{font-family:ui-monospace,monospace}
table{border-collapse:collapse}td,th{border:1px solid #d9dde3;padding:3px 8px;text-align:left;vertical-align:top}
.n{text-align:right}.bad{color:#b00020}img{max-width:100%;border:1px solid #d9dde3}
pre{background:#f4f5f7;padding:8px;white-space:pre-wrap;word-break:break-all}`;

/**
 * @typedef {object} SnapshotInput
 * @property {import('./view.js').View} view
 * @property {string} png data URL of the exported image
 * @property {string} series
 * @property {string} scale "log" or "linear"
 * @property {string} legend the legend's text (what the colours mean)
 * @property {string|null} diff the diff legend's text in diff mode
 * @property {{ from: number, to: number }} window the window shown, unix ms
 * @property {import('./types.js').KeyRange|null} keys
 * @property {{ hot: import('./types.js').HotKeys|null, error: string|null }|null} hotKeys
 * @property {import('./types.js').Fanout|undefined} fanout
 * @property {string} query the matrix API request that made the heatmap
 * @property {string} link a permalink to the same view (pinned window)
 * @property {string} host the node the browser asked
 * @property {number} takenAt unix ms (browser clock)
 */

/**
 * The snapshot document.
 * @param {SnapshotInput} s
 * @returns {string}
 */
export function snapshotHtml(s) {
  const { view } = s;
  const o = [];
  const keys = s.keys
    ? `${keyLabel(decodeKey(s.keys.start), 'start')} .. ${keyLabel(decodeKey(s.keys.end), 'end')}`
    : `${keyLabel(null, 'start')} .. ${keyLabel(null, 'end')}`;
  o.push('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n');
  o.push(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">\n`);
  o.push(`<title>KeyViz snapshot: ${esc(s.series)} ${esc(iso(s.window.from))} .. ${esc(iso(s.window.to))}</title>\n<style>${STYLE}</style></head><body>\n`);
  o.push(`<h1>KeyViz snapshot: <span id="series">${esc(s.series)}</span></h1>\n`);
  o.push(`<p class="meta">Cluster via <span class="mono">${esc(s.host)}</span>, taken ${esc(iso(s.takenAt))} (browser clock), from the web UI. `
    + `Window <span id="window">${esc(iso(s.window.from))} .. ${esc(iso(s.window.to))}</span>, ${view.slots} columns of ${view.slotMs} ms, ${view.rowIndex.length} rows. `
    + `Keys <span id="keys">${esc(keys)}</span>. Scale <span id="scale">${esc(s.scale)}</span>.</p>\n`);
  if (s.diff) o.push(`<p id="diff">${esc(s.diff)}</p>\n`);
  o.push('<h2>Heatmap</h2>\n');
  o.push(`<img id="heatmap" alt="Heatmap of ${esc(s.series)}, ${esc(iso(s.window.from))} .. ${esc(iso(s.window.to))}, with its legend" src="${esc(s.png)}">\n`);
  o.push(`<p id="legend" class="meta">${esc(s.legend)}</p>\n`);
  // Hottest ranges: the view's rows by total, as the page's list.
  const total = view.totals.reduce((a, b) => a + b, 0);
  const order = Array.from(view.totals, (t, k) => ({ t, k })).filter((e) => e.t > 0).sort((a, b) => b.t - a.t).slice(0, 10);
  o.push('<h2>Hottest key ranges</h2>\n<table id="ranges"><tr><th class="n">#</th><th>Range</th><th>Label</th><th class="n">Total</th><th class="n">Share</th><th class="n">Routes</th></tr>\n');
  order.forEach(({ t, k }, i) => {
    const row = view.matrix.rows[view.rowIndex[k]];
    const range = `[${keyLabel(decodeKey(row.start), 'start', 60)}, ${keyLabel(decodeKey(row.end), 'end', 60)})`;
    o.push(`<tr><td class="n">${i + 1}</td><td class="mono">${esc(range)}</td><td>${esc(rowLabel(row))}</td><td class="n">${formatNumber(t)}</td><td class="n">${total > 0 ? ((100 * t) / total).toFixed(1) : '0.0'} %</td><td class="n">${row.route_count}</td></tr>\n`);
  });
  if (order.length === 0) o.push('<tr><td colspan="6">No key range has traffic in this window.</td></tr>\n');
  o.push('</table>\n');
  o.push('<h2>Hottest keys</h2>\n');
  const hk = s.hotKeys?.hot;
  if (hk) {
    o.push(`<p class="meta">Capture mode ${esc(String(hk.mode))}; any key not listed has at most ${formatNumber(hk.floor)} ${esc(s.series)}${hk.sampled ? ' (sampled: bounds are statistical)' : ''}.</p>\n`);
    o.push('<table id="hot-keys"><tr><th class="n">#</th><th>Key</th><th class="n">Estimate</th><th class="n">Bounds</th><th class="n">Share</th></tr>\n');
    hk.keys.forEach((k, i) => {
      o.push(`<tr><td class="n">${i + 1}</td><td class="mono">${esc(k.preview)}</td><td class="n">${formatNumber(k.estimate)}</td><td class="n">${formatNumber(k.lower)} .. ${formatNumber(k.upper)}</td><td class="n">${hk.total > 0 ? ((100 * k.estimate) / hk.total).toFixed(1) : '0.0'} %</td></tr>\n`);
    });
    if (hk.keys.length === 0) o.push('<tr><td colspan="5">No key stands out in this window.</td></tr>\n');
    o.push('</table>\n');
  } else {
    o.push(`<p id="hot-keys">Hot keys unavailable: ${esc(s.hotKeys?.error ?? 'not loaded yet')}</p>\n`);
  }
  const f = s.fanout;
  if (f) {
    o.push(`<h2>Nodes</h2>\n<p class="meta" id="nodes-summary">${f.responded}/${f.expected} nodes answered</p>\n`);
    o.push('<table id="nodes"><tr><th>Node</th><th>Id</th><th>Status</th><th class="n">Time (ms)</th><th>Warnings</th></tr>\n');
    for (const n of f.nodes) {
      const status = n.ok ? 'ok' : `failed: ${n.error ?? 'no answer'}`;
      const warnings = (n.warnings ?? []).map((w) => (typeof w === 'string' ? w : `${w.code}${w.bucket_id ? ` [${w.bucket_id}]` : ''}: ${w.detail}`)).join('; ');
      o.push(`<tr${n.ok ? '' : ' class="bad"'}><td class="mono">${esc(n.node)}</td><td>${esc(n.node_id ?? '—')}</td><td>${esc(status)}</td><td class="n">${n.elapsed_ms ?? '—'}</td><td>${esc(warnings)}</td></tr>\n`);
    }
    o.push('</table>\n');
  } else {
    o.push('<h2>Nodes</h2>\n<p class="meta" id="nodes-summary">single node (no cluster fan-out)</p>\n');
  }
  o.push(`<h2>Query</h2>\n<pre id="query">${esc(s.query)}</pre>\n<p class="meta">The same view in the web UI: <span class="mono" id="permalink">${esc(s.link)}</span></p>\n`);
  o.push('<p class="meta">Made by the KeyViz web UI; this file needs no network to open.</p>\n</body></html>\n');
  return o.join('');
}
