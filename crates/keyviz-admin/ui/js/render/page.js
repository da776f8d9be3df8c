// @ts-check
/**
 * The page's renderers in one place: given the view model and the state, sizes the plot
 * (rows never thinner than MIN_ROW_PX: the plot grows and the page scrolls, with the time
 * axis sticky at the bottom of the viewport) and draws the heatmap, overlays, axes, outage
 * lanes, marginals, legend, header, banners, summary and text alternative. It owns no data:
 * everything comes from the ViewModel.
 */

import { byId } from '../dom.js';
import { formatDuration, formatNumber, formatTime, decodeKey, keyLabel } from '../scales.js';
import { renderKeyAxis, renderTimeAxis } from './axes.js';
import { pixelRatio } from './canvas.js';
import { HeatmapRenderer } from './heatmap.js';
import { renderDiffLegend, renderLegend } from './legend.js';
import { diffPicture } from '../diff.js';
import { drawRowMarginal, drawTimeMarginal } from './marginals.js';
import { renderOutages } from './outages.js';
import { renderLeaderChanges } from './leaders.js';
import { leaderChangeList } from '../leaders.js';
import { drawHatching, drawLeaderChanges, renderDegradedBanner, renderWarnings } from './overlays.js';

/** Thinnest row, CSS px: below this a hot row reads as a hairline and labels lose their row. */
export const MIN_ROW_PX = 8;
/** Thickest row, CSS px. */
export const MAX_ROW_PX = 28;
/** Height the rows share before they reach MIN_ROW_PX, CSS px. */
export const FIT_HEIGHT_PX = 560;

/**
 * The value drawn with the top colour at brightness `bright`: max / 2^bright, at least 1 (a
 * count below one step of the palette means nothing).
 * @param {number} max
 * @param {number} bright
 */
export function colourMaxOf(max, bright) {
  if (!(max > 0)) return max;
  return Math.max(1, max / 2 ** bright);
}

/**
 * Plot height for `rows` rows: up to MAX_ROW_PX each, shrinking to share FIT_HEIGHT_PX, but
 * never below MIN_ROW_PX (more rows make the plot taller; the page scrolls).
 * @param {number} rows
 */
export function plotHeight(rows) {
  const per = Math.min(MAX_ROW_PX, Math.max(MIN_ROW_PX, Math.floor(FIT_HEIGHT_PX / Math.max(1, rows))));
  return Math.max(160, rows * per);
}

/** @returns the page elements the renderers draw into */
export function pageElements() {
  return {
    appView: byId('app-view', HTMLElement),
    clusterStatus: byId('cluster-status', HTMLElement),
    banner: byId('banner', HTMLElement),
    warnings: byId('warnings', HTMLElement),
    summary: byId('summary', HTMLElement),
    status: byId('status', HTMLElement),
    legend: byId('legend', HTMLElement),
    keyAxis: byId('key-axis', HTMLElement),
    timeAxis: byId('time-axis', HTMLElement),
    outages: byId('outages', HTMLElement),
    outageNote: byId('outage-note', HTMLElement),
    leaderLane: byId('leader-lane', HTMLElement),
    leaderNote: byId('leader-note', HTMLElement),
    plot: byId('plot', HTMLElement),
    heat: byId('heatmap', HTMLCanvasElement),
    hatch: byId('hatch', HTMLCanvasElement),
    cursor: byId('cursor', HTMLElement),
    brush: byId('brush', HTMLElement),
    tooltip: byId('tooltip', HTMLElement),
    empty: byId('empty', HTMLElement),
    detail: byId('detail', HTMLElement),
    detailList: byId('detail-list', HTMLElement),
    detailClose: byId('detail-close', HTMLButtonElement),
    detailKeys: byId('detail-keys', HTMLButtonElement),
    hotList: byId('hot-list', HTMLOListElement),
    announcer: byId('cell-announcer', HTMLElement),
    findings: byId('findings', HTMLUListElement),
    nodesBody: byId('nodes-body', HTMLElement),
    nodesCaption: byId('nodes-caption', HTMLElement),
    timeMarginal: byId('time-marginal', HTMLCanvasElement),
    rowMarginal: byId('row-marginal', HTMLCanvasElement),
  };
}

/** @typedef {ReturnType<typeof pageElements>} PageElements */

/**
 * The header pill: the fan-out count of the last answer; when the entry node itself stops
 * answering, says so (with when it last answered) instead of keeping a stale count.
 * @param {HTMLElement} el
 * @param {import('../viewstate.js').ViewModel} model
 * @param {boolean} entryDown
 */
export function renderHeader(el, model, entryDown) {
  const f = model.lastFanout;
  if (entryDown) {
    const last = model.lastAnswerAt ? `; last answer ${formatTime(model.lastAnswerAt)}${f ? ` (${f.responded} of ${f.expected} nodes then)` : ''}` : '';
    el.textContent = `entry node not answering${last}`;
    el.className = 'pill bad';
    return;
  }
  if (f) {
    el.textContent = `cluster view (${f.responded} of ${f.expected} nodes)`;
    el.className = `pill ${f.responded < f.expected ? 'bad' : 'ok'}`;
  } else {
    el.textContent = `single node${model.main?.node_id ? ` ${model.main.node_id}` : ''}`;
    el.className = 'pill';
  }
}

/**
 * The summary line above the plot.
 * @param {import('../view.js').View} view
 * @param {import('../types.js').Matrix} matrix
 * @param {import('../types.js').ViewState} s
 * @param {string|null} fitted
 */
export function summaryText(view, matrix, s, fitted) {
  const nRows = view.rowIndex.length;
  const fit = fitted ? ` · fitted to the data: last ${fitted.replace(/m$/, ' min').replace(/h$/, ' h')}` : '';
  const span = s.range === 'span' ? ` · last ${formatDuration(s.span)}` : '';
  const keys = s.keys ? ` · keys ${keyLabel(decodeKey(s.keys.start), 'start')} → ${keyLabel(decodeKey(s.keys.end), 'end')}` : '';
  return `${nRows} rows × ${matrix.column_unix_ms.length} columns · ${matrix.series} · max ${formatNumber(view.max)} per step · ${formatTime(view.from)} – ${formatTime(view.to)}${fit}${span}${keys}`;
}

/**
 * Draws the heat and everything laid over or along it for the current view (no data work).
 * @param {PageElements} el
 * @param {HeatmapRenderer} renderer
 * @param {import('../view.js').View} view
 * @param {import('../types.js').ViewState} s
 * @param {Uint32Array} lut
 * @param {{ width: number, height: number }} size
 * @param {import('../viewstate.js').Outage[]} outages
 * @param {{ cmp: import('../types.js').Comparison, lut: Uint32Array, modeLabel: string, baselineDegraded: boolean, currentFrom: number }|null} [diff]
 *   diff mode with the server's comparison: cells are drawn against their baseline
 * @returns {ReturnType<typeof diffPicture>|null} the diff picture drawn, if any
 */
export function drawFrame(el, renderer, view, s, lut, size, outages, diff = null) {
  el.plot.style.height = `${size.height}px`;
  el.keyAxis.style.height = `${size.height}px`;
  const colourMax = colourMaxOf(view.max, s.bright);
  /** @type {ReturnType<typeof diffPicture>|null} */
  let pic = null;
  if (diff) {
    pic = diffPicture(view, diff.cmp);
    renderer.paintIndices(view.slots, view.rowIndex.length, pic.idx, diff.lut);
    renderer.draw(size.width, size.height, null);
  } else {
    renderer.render(view, s.scale, lut, size.width, size.height, colourMax);
  }
  el.plot.dataset.diff = pic ? JSON.stringify({ stops: pic.stops, more: pic.more, less: pic.less }) : '';
  drawHatching(el.hatch, view, size.width, size.height, null);
  drawLeaderChanges(el.hatch, view, null);
  drawTimeMarginal(el.timeMarginal, view, size.width, 32);
  drawRowMarginal(el.rowMarginal, view, 63, size.height);
  renderTimeAxis(el.timeAxis, view, size.width);
  const changes = leaderChangeList(view, outages);
  renderOutages(el.outages, el.outageNote, outages, view, size.width, Date.now(), changes);
  renderLeaderChanges(el.leaderLane, el.leaderNote, changes, view, size.width);
  renderKeyAxis(el.keyAxis, view, size.height);
  if (diff && pic) {
    renderDiffLegend(el.legend, { lut: diff.lut, stops: pic.stops, cmp: diff.cmp, series: view.matrix.series, modeLabel: diff.modeLabel, currentFrom: diff.currentFrom, more: pic.more, less: pic.less, uncovered: pic.uncovered, baselineDegraded: diff.baselineDegraded });
  } else {
    renderLegend(el.legend, { lut, scale: s.scale, palette: s.palette, max: colourMax, saturated: colourMax < view.max, series: view.matrix.series });
  }
  renderDegradedBanner(el.banner, view.matrix.fanout);
  renderWarnings(el.warnings, view.matrix.fanout);
  el.plot.dataset.rows = String(view.rowIndex.length);
  // The row layout, top to bottom (the union of the view's series): for tests and debugging.
  el.keyAxis.dataset.buckets = JSON.stringify(view.rowIndex.map((ri) => view.matrix.rows[ri].bucket_id));
  el.plot.dataset.rowPx = String(size.height / Math.max(1, view.rowIndex.length));
  return pic;
}

/**
 * The wheel preview: the buffer's sub-rectangle for window `w`, redrawn without a query.
 * @param {PageElements} el
 * @param {HeatmapRenderer} renderer
 * @param {import('../view.js').View} view
 * @param {{ width: number, height: number }} size
 * @param {{ from: number, to: number }} w
 * @param {import('../viewstate.js').Outage[]} outages
 */
export function drawPreview(el, renderer, view, size, w, outages) {
  const src = { x: (w.from - view.from) / view.slotMs, y: 0, w: (w.to - w.from) / view.slotMs, h: view.rowIndex.length };
  renderer.draw(size.width, size.height, src);
  drawHatching(el.hatch, view, size.width, size.height, src);
  drawLeaderChanges(el.hatch, view, src);
  renderTimeAxis(el.timeAxis, view, size.width, w);
  const changes = leaderChangeList(view, outages);
  renderOutages(el.outages, el.outageNote, outages, w, size.width, Date.now(), changes);
  renderLeaderChanges(el.leaderLane, el.leaderNote, changes, w, size.width);
}

/**
 * Slots the view may have: one per device pixel of the plot's width at most (denser data is
 * max-pooled rather than dropped).
 * @param {number} widthCss
 */
export function slotBudget(widthCss) {
  return Math.floor(widthCss * pixelRatio());
}

export { formatDuration };
