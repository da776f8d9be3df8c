// @ts-check
/**
 * The page controller: owns the loaded matrix and the derived view, fetches when the store
 * says so, and hands the view to the renderers. It decides when the login form shows (any
 * 401, or the session's expiry) so that signing in again returns to the same view; the form
 * itself lives in login.js.
 */

import { ApiError, fetchMatrix, fetchNodes } from './api.js';
import { byId } from './controls.js';
import { exportCsv, exportPng } from './export.js';
import { createHotKeys } from './hotkeys.js';
import { describeCell } from './inspect.js';
import { bindPlot } from './interact.js';
import { createLoginView } from './login.js';
import { renderKeyAxis, renderTimeAxis, rowLabel } from './render/axes.js';
import { diagnose } from './diagnose.js';
import { renderDetail, renderFindings, renderHotList } from './render/detail.js';
import { pixelRatio } from './render/canvas.js';
import { HeatmapRenderer } from './render/heatmap.js';
import { renderLegend } from './render/legend.js';
import { drawRowMarginal, drawTimeMarginal } from './render/marginals.js';
import { drawHatching, drawLeaderChanges, renderDegradedBanner, renderNodes, renderWarnings, showRect } from './render/overlays.js';
import { hideTooltip, showTooltip } from './render/tooltip.js';
import { buildLut, decodeKey, formatDuration, formatNumber, formatTime, keyLabel } from './scales.js';
import { armExpiry, clearSession, disarmExpiry, loadSession } from './session.js';
import { windowOf } from './state.js';
import { appendColumns, buildView, rowsKeySpan, stepOf } from './view.js';

/**
 * Parses a CSS colour custom property (#rgb or #rrggbb) into RGB; `fallback` otherwise.
 * @param {string} name
 * @param {[number, number, number]} fallback
 * @returns {[number, number, number]}
 */
function cssRgb(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(v);
  if (!m) return fallback;
  const hex = m[1].length === 3 ? [...m[1]].map((c) => c + c).join('') : m[1];
  return [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16), parseInt(hex.slice(4, 6), 16)];
}

/**
 * What an error means for the operator, and what to do about it.
 * @param {unknown} err
 */
export function explainError(err) {
  if (err instanceof ApiError) {
    if (err.status === 0 && err.code === 'network_error') return 'The admin server did not answer. Check that the node is running and reachable, then press Refresh.';
    if (err.status === 503) return `KeyViz is not available on this node (${err.describe()}). Enable the sampler in the node configuration and restart it.`;
    if (err.status === 400) return `The server rejected this view (${err.describe()}). Press Reset to return to a default view.`;
    if (err.status === 403) return `This access key may not read the heatmap (${err.describe()}). Sign in with another key.`;
    return `Loading the heatmap failed (${err.describe()}). Press Refresh to try again.`;
  }
  return `Unexpected error: ${String(err)}. Press Refresh to try again.`;
}

/**
 * The key bounds of a matrix request for a key zoom: an empty or open start and an open end
 * are left out (the server then starts at the first key / runs to the last).
 * @param {import('./types.js').KeyRange|null} keys
 * @returns {{ keyStart?: string, keyEnd?: string }}
 */
export function keyParams(keys) {
  /** @type {{ keyStart?: string, keyEnd?: string }} */
  const out = {};
  if (keys?.start) out.keyStart = keys.start;
  if (keys?.end != null) out.keyEnd = keys.end;
  return out;
}

/**
 * @param {import('./state.js').Store} store
 */
export function createApp(store) {
  const el = {
    appView: byId('app-view', HTMLElement),
    clusterStatus: byId('cluster-status', HTMLElement),
    banner: byId('banner', HTMLElement),
    warnings: byId('warnings', HTMLElement),
    summary: byId('summary', HTMLElement),
    status: byId('status', HTMLElement),
    legend: byId('legend', HTMLElement),
    keyAxis: byId('key-axis', HTMLElement),
    timeAxis: byId('time-axis', HTMLElement),
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
  const renderer = new HeatmapRenderer(el.heat);

  /** @type {import('./types.js').Matrix|null} */
  let matrix = null;
  /** @type {import('./view.js').View|null} */
  let view = null;
  /** @type {{ from: number, to: number }} the window the matrix was fetched for */
  let fetchedWindow = { from: 0, to: 0 };
  /** @type {Uint32Array} */
  let lut = new Uint32Array(256);
  let size = { width: 0, height: 0 };
  /** @type {(import('./interact.js').Cell & { bucket: string, time: number })|null} pinned cell, with its identity */
  let pinned = null;
  /** @type {string|null} bucket id shown in the detail panel */
  let detailBucket = null;
  let loading = false;
  /** Sequence number of the latest load; older ones drop their results. */
  let loadSeq = 0;
  /** @type {unknown} */
  let lastError = null;
  /** @type {number|undefined} */
  let pollTimer;
  /** @type {{ from: number, to: number }|null} window shown during a wheel gesture */
  let wheelWindow = null;
  /** @type {number|undefined} */
  let wheelTimer;

  const setPageState = (/** @type {string} */ s) => {
    document.body.dataset.state = s;
  };

  /** @param {string} message @param {'info'|'error'|'busy'} [kind] */
  const notify = (message, kind = 'info') => {
    el.status.textContent = message;
    el.status.classList.toggle('error', kind === 'error');
    el.status.classList.toggle('busy', kind === 'busy');
  };

  // ---- session -------------------------------------------------------------------------

  const signIn = createLoginView({
    onSignedIn: (session) => showApp(session),
    onSignedOut: () => {
      matrix = null;
      view = null;
      showLogin('Signed out.');
    },
  });

  /** @param {string} reason */
  const showLogin = (reason) => {
    stopPolling();
    disarmExpiry();
    el.appView.hidden = true;
    el.clusterStatus.textContent = '';
    signIn.show(reason);
    setPageState('login');
  };

  const expire = () => {
    clearSession();
    showLogin('Your session expired. Sign in again to return to this view.');
  };

  /** Any 401: the stored session expired (or there was none), so the login form returns. */
  const unauthorized = () => {
    if (loadSession()) expire();
    else {
      clearSession();
      showLogin('Sign in with an access key listed in the admin configuration.');
    }
  };

  const hotKeys = createHotKeys({ notify: (m) => notify(m), onUnauthorized: () => unauthorized(), onClose: () => el.plot.focus() });

  /**
   * Shows the heatmap page and loads it. `s` is null when the tab has no stored session (a
   * permalink opened in a new tab): the cookie may still be valid, and a 401 brings the login
   * form back if it is not.
   * @param {import('./types.js').Session|null} s
   */
  const showApp = (s) => {
    signIn.hide(s);
    el.appView.hidden = false;
    if (s) armExpiry(s, expire);
    void load(false);
    schedulePolling();
  };

  // ---- fetching ------------------------------------------------------------------------

  const stopPolling = () => {
    clearInterval(pollTimer);
    pollTimer = undefined;
  };

  const schedulePolling = () => {
    stopPolling();
    const s = store.state;
    const period = s.auto > 0 ? s.auto : s.live ? 5 : 0;
    if (period === 0) return;
    pollTimer = window.setInterval(() => {
      // Skip ticks while hidden or while the previous request is still running: polling must
      // not pile up behind a slow server.
      if (document.hidden || loading) return;
      void load(store.state.live);
    }, period * 1000);
  };

  /**
   * @param {boolean} append in live mode, fetch only the columns after the last one we have
   */
  const load = async (append) => {
    const s = store.state;
    const now = Date.now();
    const w = windowOf(s, now);
    const seq = ++loadSeq;
    loading = true;
    setPageState(matrix ? 'refreshing' : 'loading');
    notify(matrix ? 'Refreshing…' : 'Loading the heatmap…', 'busy');
    if (!matrix) showEmpty('Loading the heatmap…');
    try {
      let next = null;
      if (append && matrix && matrix.series === s.series && matrix.column_unix_ms.length) {
        const step = stepOf(matrix);
        // Re-ask for the last two columns too: they may have been read while some peers had
        // flushed and others not yet.
        const after = matrix.column_unix_ms[matrix.column_unix_ms.length - 1] - step;
        const delta = await fetchMatrix({ series: s.series, from: after, rows: s.rows, ...keyParams(s.keys) });
        if (seq !== loadSeq) return;
        next = appendColumns(matrix, delta, Math.floor(w.from / step) * step);
      }
      if (!next) {
        next = await fetchMatrix({ series: s.series, from: w.from, to: s.range === 'custom' ? w.to : undefined, rows: s.rows, ...keyParams(s.keys) });
      }
      // A newer load started meanwhile (it aborted our request, or raced it): its answer wins.
      if (seq !== loadSeq) return;
      matrix = next;
      fetchedWindow = w;
      lastError = null;
      render(true);
      loadViewHotKeys();
      notify(view && view.max === 0 && view.rowIndex.length > 0
        ? `Updated ${formatTime(Date.now())}. Every cell in this window is zero: no ${s.series} were recorded; try another series or a longer range.`
        : `Updated ${formatTime(Date.now())}.`);
      void loadNodes();
    } catch (err) {
      if ((err instanceof DOMException && err.name === 'AbortError') || seq !== loadSeq) return;
      if (err instanceof ApiError && err.status === 401) {
        unauthorized();
        return;
      }
      lastError = err;
      notify(explainError(err), 'error');
      setPageState('error');
      // Stale data stays visible under the error; with none, the plot says what happened.
      if (!matrix) showEmpty(explainError(err));
    } finally {
      if (seq === loadSeq) loading = false;
    }
  };

  /** Reloads the "Hottest keys" list for the view's time window and key range. */
  const loadViewHotKeys = () => {
    if (!view || !matrix) return;
    const keys = store.state.keys;
    const label = keys
      ? `keys ${keyLabel(decodeKey(keys.start), 'start')} → ${keyLabel(decodeKey(keys.end), 'end')}`
      : 'all keys';
    void hotKeys.loadView({ kind: 'view', series: matrix.series, from: view.from, to: view.to, keyStart: keys?.start ?? null, keyEnd: keys?.end ?? null, label });
  };

  /** Refreshes the members table; failures only mark it unavailable (the heatmap matters more). */
  const loadNodes = async () => {
    try {
      renderNodes(el.nodesBody, el.nodesCaption, await fetchNodes());
    } catch (err) {
      el.nodesBody.replaceChildren();
      el.nodesCaption.textContent = `Membership unavailable: ${err instanceof ApiError ? err.describe() : String(err)}`;
    }
  };

  // ---- rendering -----------------------------------------------------------------------

  /** @param {string} text */
  const showEmpty = (text) => {
    el.empty.textContent = text;
    el.empty.hidden = false;
  };

  const measure = () => {
    const width = Math.max(200, Math.floor(el.plot.clientWidth || 800));
    const rows = view ? view.rowIndex.length : 0;
    // Up to 28 px per row, shrinking to fit 720 px, but never below 1 CSS px per row: a
    // 1024-row matrix gets 1024 px so no row is dropped when the buffer is scaled.
    const per = Math.min(28, Math.max(1, Math.floor(720 / Math.max(1, rows))));
    const height = Math.max(160, rows * per);
    return { width, height };
  };

  /** The buffer sub-rectangle for a window inside the view (wheel preview). */
  const srcFor = (/** @type {{ from: number, to: number }|null} */ w) => {
    if (!w || !view) return null;
    return { x: (w.from - view.from) / view.slotMs, y: 0, w: (w.to - w.from) / view.slotMs, h: view.rowIndex.length };
  };

  /**
   * Draws everything from the current matrix. `rebuild` recomputes the view geometry (new data
   * or key range); otherwise the existing view is repainted (palette, colour scheme, resize).
   * @param {boolean} rebuild
   */
  const render = (rebuild) => {
    if (!matrix) return;
    const s = store.state;
    const viewWindow = s.range === 'custom' ? fetchedWindow : { from: fetchedWindow.from, to: Math.max(fetchedWindow.to, Date.now()) };
    if (rebuild || !view) {
      // One slot per device pixel at most: denser data is max-pooled rather than dropped.
      view = buildView(matrix, viewWindow, s.keys, Math.floor(measure().width * pixelRatio()));
    }
    size = measure();
    el.plot.style.height = `${size.height}px`;
    el.keyAxis.style.height = `${size.height}px`;
    lut = buildLut(s.palette, cssRgb('--cell-zero', [217, 221, 227]), cssRgb('--cell-nodata', [244, 245, 247]));
    renderer.render(view, s.scale, lut, size.width, size.height);
    wheelWindow = null;
    drawHatching(el.hatch, view, size.width, size.height, null);
    drawLeaderChanges(el.hatch, view, null);
    drawTimeMarginal(el.timeMarginal, view, size.width, 32);
    drawRowMarginal(el.rowMarginal, view, 63, size.height);
    renderTimeAxis(el.timeAxis, view, size.width);
    renderKeyAxis(el.keyAxis, view, size.height);
    renderLegend(el.legend, { lut, scale: s.scale, palette: s.palette, max: view.max, series: matrix.series });
    renderDegradedBanner(el.banner, matrix.fanout);
    renderWarnings(el.warnings, matrix.fanout);
    renderHeader();
    renderHotList(el.hotList, view, openRow);
    if (rebuild) {
      const v = view;
      renderFindings(el.findings, diagnose(v, (k) => rowLabel(v.matrix.rows[v.rowIndex[k]])), zoomToRows);
    }
    const nRows = view.rowIndex.length;
    el.plot.dataset.rows = String(nRows);
    const cols = matrix.column_unix_ms.length;
    el.summary.textContent = `${nRows} rows × ${cols} columns · ${matrix.series} · max ${formatNumber(view.max)} per step · ${formatTime(view.from)} – ${formatTime(view.to)}${s.keys ? ` · keys ${keyLabel(decodeKey(s.keys.start), 'start')} → ${keyLabel(decodeKey(s.keys.end), 'end')}` : ''}`;
    const top = view.totals.length ? Math.max(...view.totals) : 0;
    el.plot.setAttribute('aria-label', `Heatmap of ${matrix.series}: ${nRows} key ranges by ${view.slots} time steps, max ${formatNumber(view.max)} per step${top > 0 ? '; the hottest ranges are listed under "Hottest key ranges" and the hottest single keys under "Hottest keys"' : ''}.`);
    if (nRows === 0) {
      showEmpty(matrix.rows.length > 0
        ? 'No key ranges in the zoomed range. Press Back or Reset to widen the view.'
        : `No key range has traffic in this window. Drive some traffic, choose a longer time range, or wait for the next flush (every ${formatDuration(view.stepMs)}).`);
      setPageState('empty');
    } else {
      el.empty.hidden = true;
      setPageState(lastError ? 'error' : 'ready');
    }
    if (detailBucket) {
      const k = view.rowIndex.findIndex((ri) => matrix?.rows[ri].bucket_id === detailBucket);
      if (k >= 0) renderDetail(el.detail, el.detailList, view, k, notify);
      else closeDetail();
    }
    if (pinned) {
      // Re-find the pinned cell by bucket and time: after a refresh or a live tick the same
      // row/slot index may hold another range or another time window.
      const v = view;
      const k = v.rowIndex.findIndex((ri) => matrix?.rows[ri].bucket_id === pinned?.bucket);
      const slot = Math.floor((pinned.time - v.from) / v.slotMs);
      if (k >= 0 && slot >= 0 && slot < v.slots) {
        pinned = { ...pinned, k, slot };
        placeTooltip(pinned, true);
      } else {
        unpin();
      }
    }
  };

  const renderHeader = () => {
    const f = matrix?.fanout;
    if (f) {
      el.clusterStatus.textContent = `cluster view (${f.responded} of ${f.expected} nodes)`;
      el.clusterStatus.className = `pill ${f.responded < f.expected ? 'bad' : 'ok'}`;
    } else {
      el.clusterStatus.textContent = `single node${matrix?.node_id ? ` ${matrix.node_id}` : ''}`;
      el.clusterStatus.className = 'pill';
    }
  };

  // ---- inspection ----------------------------------------------------------------------

  /** @param {import('./interact.js').Cell} c */
  const cellInfo = (c) => (view ? describeCell(view, c) : null);

  /** @param {import('./interact.js').Cell} c @param {boolean} isPinned */
  const placeTooltip = (c, isPinned) => {
    const info = cellInfo(c);
    if (!info || !view) return;
    const cw = size.width / view.slots;
    const ch = size.height / view.rowIndex.length;
    showRect(el.cursor, { x: c.slot * cw, y: c.k * ch, w: Math.max(2, cw), h: Math.max(2, ch) });
    showTooltip(el.tooltip, info, (c.slot + 0.5) * cw, (c.k + 0.5) * ch, size.width, isPinned);
  };

  const unpin = () => {
    pinned = null;
    hideTooltip(el.tooltip);
    showRect(el.cursor, null);
  };

  /**
   * Zooms the key axis to displayed rows `rows` (contiguous), keeping the time window.
   * @param {number[]} rows
   */
  const zoomToRows = (rows) => {
    if (!view || !matrix || rows.length === 0) return;
    const m = matrix;
    const v = view;
    store.zoomTo(view.from, view.to, rowsKeySpan(rows.map((k) => m.rows[v.rowIndex[k]])));
  };

  /**
   * The hot-key selection of displayed row `k`: its key range, over `from`..`to`.
   * @param {number} k
   * @param {'cell'|'row'} kind
   * @param {number} from
   * @param {number} to
   * @returns {import('./hotkeys.js').HotKeySelection|null}
   */
  const selectionOf = (k, kind, from, to) => {
    if (!view || !matrix) return null;
    const row = matrix.rows[view.rowIndex[k]];
    if (!row) return null;
    const range = `[${keyLabel(decodeKey(row.start), 'start', 40)}, ${keyLabel(decodeKey(row.end), 'end', 40)})`;
    return { kind, series: matrix.series, from, to, keyStart: row.start ?? null, keyEnd: row.end ?? null, label: `${rowLabel(row)} ${range}` };
  };

  /** Opens the detail of displayed row `k` and its top keys over the whole view. @param {number} k */
  const openRow = (k) => {
    if (!view) return;
    openDetail(k);
    const sel = selectionOf(k, 'row', view.from, view.to);
    if (sel) void hotKeys.show(sel);
  };

  /** @param {number} k */
  const openDetail = (k) => {
    if (!view || !matrix) return;
    detailBucket = matrix.rows[view.rowIndex[k]].bucket_id;
    renderDetail(el.detail, el.detailList, view, k, notify);
  };
  const closeDetail = () => {
    detailBucket = null;
    el.detail.hidden = true;
  };
  el.detailKeys.addEventListener('click', () => {
    if (!view || !matrix) return;
    const k = view.rowIndex.findIndex((ri) => matrix?.rows[ri].bucket_id === detailBucket);
    if (k >= 0) openRow(k);
  });
  // A click on the key axis opens that row (labels may sit a few px off a dense row, so a
  // label's own row wins over the pointer's).
  el.keyAxis.addEventListener('click', (e) => {
    if (!view || view.rowIndex.length === 0) return;
    const t = /** @type {HTMLElement|null} */ (e.target instanceof HTMLElement ? e.target : null);
    const fromLabel = t?.dataset.row !== undefined ? Number(t.dataset.row) : NaN;
    const y = e.clientY - el.keyAxis.getBoundingClientRect().top;
    const k = Number.isInteger(fromLabel) ? fromLabel : Math.floor((y / size.height) * view.rowIndex.length);
    if (k >= 0 && k < view.rowIndex.length) openRow(k);
  });
  el.detailClose.addEventListener('click', () => {
    closeDetail();
    el.plot.focus();
  });

  const plotInput = bindPlot(el.plot, {
    geometry: () => (view && matrix ? { width: size.width, height: size.height, slots: view.slots, rows: view.rowIndex.length } : null),
    hover: (c, _x, _y, fromKeyboard) => {
      if (pinned && !fromKeyboard) return;
      if (fromKeyboard) pinned = null;
      if (!c) {
        hideTooltip(el.tooltip);
        showRect(el.cursor, null);
        return;
      }
      placeTooltip(c, false);
      // Screen readers do not see the tooltip; the keyboard cursor's cell is announced instead.
      const info = fromKeyboard ? cellInfo(c) : null;
      if (info) el.announcer.textContent = `${info.keys}, ${info.time}: ${info.value}${info.conflict === 'no' ? '' : ', conflict'}`;
    },
    pin: (c) => {
      if (!view || !matrix) return;
      pinned = { ...c, bucket: matrix.rows[view.rowIndex[c.k]].bucket_id, time: view.from + c.slot * view.slotMs };
      placeTooltip(c, true);
      openDetail(c.k);
      // The cell's top keys: its row's key range over its pixel column's window.
      const t0 = view.from + c.slot * view.slotMs;
      const sel = selectionOf(c.k, 'cell', t0, t0 + view.slotMs);
      if (sel) void hotKeys.show(sel);
    },
    unpin,
    brushPreview: (r) => showRect(el.brush, r),
    brush: (sel) => {
      if (!view || !matrix) return;
      const from = view.from + sel.slot0 * view.slotMs;
      const to = view.from + sel.slot1 * view.slotMs;
      const all = sel.k0 === 0 && sel.k1 >= view.rowIndex.length;
      const m = matrix;
      const v = view;
      const keys = all ? store.state.keys : rowsKeySpan(v.rowIndex.slice(sel.k0, sel.k1).map((ri) => m.rows[ri]));
      store.zoomTo(from, to, keys);
    },
    wheel: (factor, at) => {
      if (!view) return;
      const cur = wheelWindow ?? { from: view.from, to: view.to };
      const span = Math.max(view.stepMs * 4, (cur.to - cur.from) * factor);
      const anchor = cur.from + (cur.to - cur.from) * at;
      const next = { from: anchor - span * at, to: anchor - span * at + span };
      if (next.to > Date.now() + view.stepMs) {
        next.from -= next.to - Date.now();
        next.to = Date.now();
      }
      wheelWindow = next;
      // Instant preview from the buffer we have; the real query follows when the wheel rests.
      renderer.draw(size.width, size.height, srcFor(next));
      drawHatching(el.hatch, view, size.width, size.height, srcFor(next));
      drawLeaderChanges(el.hatch, view, srcFor(next));
      renderTimeAxis(el.timeAxis, view, size.width, next);
      clearTimeout(wheelTimer);
      // Each wheel event restarts the timer, so the last window of the gesture is queried
      // (even if a refresh redrew the plot meanwhile).
      wheelTimer = window.setTimeout(() => store.zoomTo(next.from, next.to, store.state.keys), 350);
    },
    back: () => store.back(),
    reset: () => store.reset(),
  });

  // ---- reactions -----------------------------------------------------------------------

  store.addEventListener('change', (e) => {
    const detail = /** @type {CustomEvent<import('./state.js').ChangeDetail>} */ (e).detail;
    if (detail.refetch) {
      unpin();
      // Another series, window or key range: the selected cell or row is gone.
      hotKeys.close();
      plotInput.clearCursor();
      void load(false);
    } else if (detail.reason === 'scale') {
      render(true);
    } else if (detail.reason === 'palette') {
      render(false);
    }
    schedulePolling();
  });

  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => render(false));
  new ResizeObserver(() => {
    if (!view) return;
    const next = measure();
    // A new width changes how many steps share a pixel column: rebuild the view.
    if (next.width !== size.width) render(true);
    else if (next.height !== size.height) render(false);
  }).observe(el.plot);
  const watchDpr = () => {
    const mq = window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
    mq.addEventListener('change', () => {
      render(true);
      watchDpr();
    }, { once: true });
  };
  watchDpr();
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && pinned) unpin();
  });
  // "Click elsewhere" releases the pin; the detail panel (copy buttons) does not count.
  document.addEventListener('pointerdown', (e) => {
    const t = /** @type {Node|null} */ (e.target);
    if (pinned && t && !el.plot.contains(t) && !el.detail.contains(t) && !hotKeys.contains(t)) unpin();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && (store.state.auto || store.state.live) && !loading && matrix) void load(store.state.live);
  });

  return {
    /** Boots: the stored session opens the app, otherwise the login form. */
    start() {
      showApp(loadSession());
    },
    refresh: () => void load(false),
    exportPng: () => {
      if (!view || !matrix) return notify('Nothing to export yet.');
      const dark = window.matchMedia('(prefers-color-scheme: dark)').matches;
      exportPng(el.heat, el.hatch, view, `KeyViz · ${matrix.series} · ${formatTime(view.from)} – ${formatTime(view.to)} · ${el.clusterStatus.textContent}`, dark);
    },
    exportCsv: () => {
      if (!view) return notify('Nothing to export yet.');
      exportCsv(view);
    },
    copyLink: async () => {
      try {
        await navigator.clipboard.writeText(location.href);
        notify('Link to this view copied.');
      } catch {
        notify(`Copy this link: ${location.href}`);
      }
    },
    notify,
    rowLabel,
  };
}
