// @ts-check
/**
 * The page controller: wires the loader (fetching, polling, live appends), the view model
 * (what is loaded, pinned, in the detail panel, the outage log) and the renderers to the
 * store and to the plot's input. It decides when the login form shows (any 401, or the
 * session's expiry) so that signing in again returns to the same view; the form itself lives
 * in login.js.
 */

import { ApiError, fetchMatrix, fetchNodes } from './api.js';
import { cssRgb } from './dom.js';
import { composeImage, download, exportCsv, exportPng, stamp } from './export.js';
import { createHotKeys } from './hotkeys.js';
import { describeCell } from './inspect.js';
import { bindPlot } from './interact.js';
import { createLoader } from './loader.js';
import { createLoginView } from './login.js';
import { rowLabel } from './render/axes.js';
import { diagnose } from './diagnose.js';
import { baselineOf, buildDiffLut, cellChange, diffModeLabel, formatDelta, formatRatio, rowChanges } from './diff.js';
import { absWindow, diffLegendText } from './render/legend.js';
import { snapshotHtml } from './snapshot.js';
import { renderDetail, renderFindings, renderHotList } from './render/detail.js';
import { HeatmapRenderer } from './render/heatmap.js';
import { colourMaxOf, drawFrame, drawPreview, pageElements, plotHeight, renderHeader, slotBudget, summaryText } from './render/page.js';
import { renderNodes, showRect } from './render/overlays.js';
import { hideTooltip, showTooltip } from './render/tooltip.js';
import { buildLut, decodeKey, formatDuration, formatNumber, formatTime, keyLabel, PALETTE_LABELS } from './scales.js';
import { armExpiry, clearSession, disarmExpiry, loadSession } from './session.js';
import { pinnedQuery, toQuery } from './state.js';
import { buildView, rowsKeySpan } from './view.js';
import { coverageOutages, dataExtent, displayWindow, recordEntryFailure, recordFanout, recordGaps, ViewModel } from './viewstate.js';

export { keyParams } from './loader.js';

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

/** sessionStorage key of the outage log (survives a reload of the tab, not a new tab). */
const OUTAGES_KEY = 'keyviz.outages';

/**
 * @param {import('./state.js').Store} store
 */
export function createApp(store) {
  const el = pageElements();
  const renderer = new HeatmapRenderer(el.heat);
  const model = new ViewModel();
  try {
    const saved = JSON.parse(sessionStorage.getItem(OUTAGES_KEY) ?? '[]');
    if (Array.isArray(saved)) model.outages = saved.filter((o) => o && typeof o.node === 'string' && Number.isFinite(o.from));
  } catch {
    model.outages = [];
  }
  /** @type {Map<string, number>} per node address, the server's last good answer time */
  let lastOk = new Map();
  let entryDown = false;
  /** @type {Uint32Array} */
  let lut = new Uint32Array(256);
  let size = { width: 0, height: 0 };
  /** @type {number|undefined} */
  let wheelTimer;
  /** the diff picture last drawn and its colour table (diff mode), for the exports */
  /** @type {{ stops: number }|null} */
  let lastPic = null;
  let diffLut = new Uint32Array(256);

  const saveOutages = () => {
    try {
      sessionStorage.setItem(OUTAGES_KEY, JSON.stringify(model.outages));
    } catch {
      // Storage full or disabled: the log lives until the page is closed.
    }
  };

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
      model.clear();
      showLogin('Signed out.');
    },
  });

  /** @param {string} reason */
  const showLogin = (reason) => {
    loader.stop();
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
    void loader.load(false);
    loader.schedule();
  };

  // ---- loading -------------------------------------------------------------------------

  /** @param {string} text */
  const showEmpty = (text) => {
    el.empty.textContent = text;
    el.empty.hidden = false;
  };

  const loader = createLoader({
    state: () => store.state,
    loaded: () => model.loaded(),
    fetchMatrix: (p, slot) => fetchMatrix(p, slot),
    now: () => Date.now(),
    hidden: () => document.hidden,
    setInterval: (fn, ms) => window.setInterval(fn, ms),
    clearInterval: (id) => window.clearInterval(id),
    onStart: (first) => {
      setPageState(first ? 'loading' : 'refreshing');
      notify(first ? 'Loading the heatmap…' : 'Refreshing…', 'busy');
      if (first) showEmpty('Loading the heatmap…');
    },
    onLoaded: (r) => {
      const now = Date.now();
      model.setLoad(r.matrices, r.plan, r.window);
      model.lastError = null;
      model.lastAnswerAt = now;
      model.lastFanout = r.matrices[0].fanout;
      entryDown = false;
      model.outages = recordGaps(recordFanout(model.outages, model.lastFanout, now, lastOk), coverageOutages(r.matrices[0]));
      saveOutages();
      render(true);
      loadViewHotKeys();
      const s = store.state;
      notify(model.view && model.view.max === 0 && model.view.rowIndex.length > 0
        ? `Updated ${formatTime(now)}. Every cell in this window is zero: no ${s.series} were recorded; try another series or a longer range.`
        : `Updated ${formatTime(now)}.`);
      void loadNodes();
    },
    onError: (err) => {
      if (err instanceof ApiError && err.status === 401) {
        unauthorized();
        return;
      }
      model.lastError = err;
      if (err instanceof ApiError && err.status === 0 && err.code === 'network_error') {
        entryDown = true;
        model.outages = recordEntryFailure(model.outages, location.host, err.describe(), Date.now(), model.lastAnswerAt);
        saveOutages();
        renderHeader(el.clusterStatus, model, true);
        if (model.view) render(false);
      }
      notify(explainError(err), 'error');
      setPageState('error');
      // Stale data stays visible under the error; with none, the plot says what happened.
      if (!model.matrix) showEmpty(explainError(err));
    },
  });

  /** Reloads the "Hottest keys" list for the view's time window and key range. */
  const loadViewHotKeys = () => {
    const { view, matrix } = model;
    if (!view || !matrix) return;
    const keys = store.state.keys;
    const label = keys
      ? `keys ${keyLabel(decodeKey(keys.start), 'start')} → ${keyLabel(decodeKey(keys.end), 'end')}`
      : 'all keys';
    void hotKeys.loadView({ kind: 'view', series: store.state.series, from: view.from, to: view.to, keyStart: keys?.start ?? null, keyEnd: keys?.end ?? null, label });
  };

  /** Refreshes the members table; failures only mark it unavailable (the heatmap matters more). */
  const loadNodes = async () => {
    try {
      const data = await fetchNodes();
      renderNodes(el.nodesBody, el.nodesCaption, data);
      const nodes = Array.isArray(/** @type {any} */ (data)?.nodes) ? /** @type {any} */ (data).nodes : [];
      lastOk = new Map(nodes.filter((/** @type {any} */ n) => typeof n.node === 'string' && Number.isFinite(n.last_ok_unix_ms)).map((/** @type {any} */ n) => [n.node, n.last_ok_unix_ms]));
    } catch (err) {
      el.nodesBody.replaceChildren();
      el.nodesCaption.textContent = `Membership unavailable: ${err instanceof ApiError ? err.describe() : String(err)}`;
    }
  };

  // ---- rendering -----------------------------------------------------------------------

  const measure = () => {
    const width = Math.max(200, Math.floor(el.plot.clientWidth || 800));
    return { width, height: plotHeight(model.view ? model.view.rowIndex.length : 0) };
  };

  /**
   * Draws everything from the current matrix. `rebuild` recomputes the view geometry (new data
   * or key range); otherwise the existing view is repainted (palette, colour scheme, resize).
   * @param {boolean} rebuild
   */
  const render = (rebuild) => {
    const matrix = model.matrix;
    if (!matrix) return;
    const s = store.state;
    if (rebuild || !model.view) {
      const w = displayWindow(s, model.fetchedWindow, model.main, Date.now());
      model.fitted = w.fitted;
      model.view = buildView(matrix, w, s.keys, slotBudget(measure().width));
    }
    const view = model.view;
    size = measure();
    const zeroRgb = cssRgb('--cell-zero', [217, 221, 227]);
    const noDataRgb = cssRgb('--cell-nodata', [244, 245, 247]);
    lut = buildLut(s.palette, zeroRgb, noDataRgb);
    model.wheelWindow = null;
    const cmp = currentComparison();
    diffLut = buildDiffLut(zeroRgb);
    const diff = cmp && model.fetchedWindow
      ? { cmp, lut: diffLut, modeLabel: diffModeLabel(s.diff), baselineDegraded: !!(model.main?.baseline_fanout && model.main.baseline_fanout.responded < model.main.baseline_fanout.expected), currentFrom: Math.floor(model.fetchedWindow.from) }
      : null;
    lastPic = drawFrame(el, renderer, view, s, lut, size, model.outages, diff);
    renderHeader(el.clusterStatus, model, entryDown);
    renderHotList(el.hotList, view, openRow);
    if (rebuild) renderFindings(el.findings, diagnose(view, (k) => rowLabel(view.matrix.rows[view.rowIndex[k]])), zoomToRows);
    const nRows = view.rowIndex.length;
    el.summary.textContent = summaryText(view, matrix, s, model.fitted)
      + (s.diff !== 'off' ? (diff ? ` · diff against ${diffModeLabel(s.diff)}` : ' · diff mode: the server sent no comparison (an older node?), showing the plain heatmap') : '');
    const top = view.totals.length ? Math.max(...view.totals) : 0;
    el.plot.setAttribute('aria-label', `Heatmap of ${matrix.series}: ${nRows} key ranges by ${view.slots} time steps, max ${formatNumber(view.max)} per step${top > 0 ? '; the hottest ranges are listed under "Hottest key ranges" and the hottest single keys under "Hottest keys"' : ''}.`);
    if (nRows === 0) {
      showEmpty(matrix.rows.length > 0
        ? 'No key ranges in the zoomed range. Press Back or Reset to widen the view.'
        : `No key range has traffic in this window. Drive some traffic, choose a longer time range, or wait for the next flush (every ${formatDuration(view.stepMs)}).`);
      setPageState('empty');
    } else {
      el.empty.hidden = true;
      setPageState(model.lastError ? 'error' : 'ready');
    }
    if (model.detailBucket) {
      const k = model.rowOf(model.detailBucket);
      if (k >= 0) renderDetail(el.detail, el.detailList, view, k, notify);
      else closeDetail();
    }
    if (model.pinned) {
      const p = model.repin();
      if (p) placeTooltip(p, true);
      else unpin();
    }
  };

  /** The server's comparison for the view shown, in diff mode. */
  const currentComparison = () => (store.state.diff !== 'off' ? model.main?.compare ?? null : null);

  /** The keys in view as text. */
  const keysText = () => {
    const keys = store.state.keys;
    return keys ? `keys ${keyLabel(decodeKey(keys.start), 'start')} → ${keyLabel(decodeKey(keys.end), 'end')}` : 'all keys';
  };

  /**
   * The labels drawn into the PNG export and the snapshot's image: series, window, key range,
   * scale and the legend of what is on screen.
   * @returns {import('./export.js').ImageLabels|null}
   */
  const imageLabels = () => {
    const { view, matrix } = model;
    if (!view || !matrix) return null;
    const s = store.state;
    const cmp = currentComparison();
    const title = `KeyViz · ${matrix.series}${cmp ? ' · diff' : ''} · ${absWindow(view.from, view.to)}`;
    const lines = [
      `Series ${matrix.series} · window ${absWindow(view.from, view.to)} (${formatDuration(Math.max(1, view.to - view.from))}) · ${view.rowIndex.length} rows × ${view.slots} columns of ${formatDuration(view.slotMs)} · ${keysText()}`,
      `Scale ${cmp && lastPic ? `diff, log2 ratio ÷${2 ** lastPic.stops} … ×${2 ** lastPic.stops}` : `${s.scale}, ${PALETTE_LABELS[s.palette]} palette`} · ${el.clusterStatus.textContent}`,
    ];
    if (cmp && lastPic && model.fetchedWindow) {
      return { title, lines, legend: { kind: 'diff', lut: diffLut, stops: lastPic.stops, text: `${diffLegendText(cmp, matrix.series, diffModeLabel(s.diff), Math.floor(model.fetchedWindow.from))} Blue: less than the baseline, white: no change, orange: more.` } };
    }
    const colourMax = colourMaxOf(view.max, s.bright);
    const saturated = colourMax < view.max;
    return {
      title,
      lines,
      legend: { kind: 'plain', lut, scale: s.scale, max: colourMax, saturated, text: `${matrix.series} per cell (${s.scale}); top colour ${saturated ? '≥ ' : ''}${formatNumber(colourMax)} per step. Grey: 0 (no traffic); pale: no data; hatching: conflicting counts; cyan bar: leader change.` },
    };
  };

  /** The matrix API request that made the view. */
  const queryText = () => {
    const s = store.state;
    const w = model.fetchedWindow;
    const q = new URLSearchParams();
    q.set('series', s.series);
    if (w && w.from > 0) q.set('from_unix_ms', String(Math.floor(w.from)));
    if (w && s.range === 'custom') q.set('to_unix_ms', String(Math.ceil(w.to)));
    q.set('rows', String(s.rows));
    if (s.keys?.start) q.set('key_start', s.keys.start);
    if (s.keys?.end != null) q.set('key_end', s.keys.end);
    const b = w ? baselineOf(s, w) : null;
    if (b) {
      q.set('baseline_from_unix_ms', String(Math.floor(b.from)));
      q.set('baseline_to_unix_ms', String(Math.ceil(b.to)));
    }
    return `GET ${location.origin}/admin/api/v1/keyviz/matrix?${q.toString()}`;
  };

  // ---- inspection ----------------------------------------------------------------------

  /**
   * Diff lines of a cell's tooltip: the cell and its row against the baseline.
   * @param {import('./interact.js').Cell} c
   * @returns {[string, string][]}
   */
  const diffLines = (c) => {
    const cmp = currentComparison();
    const view = model.view;
    if (!cmp || !view) return [];
    const rc = rowChanges(view, cmp)[c.k];
    if (!rc) return [['Diff', 'no comparison for this row (a layout row of another series)']];
    const values = view.matrix.rows[view.rowIndex[c.k]].values;
    let v = 0;
    let n = 0;
    for (let j = 0; j < values.length; j++) {
      if (view.colSlot[j] === c.slot) {
        v += values[j];
        n++;
      }
    }
    const row = `${formatNumber(rc.current)} vs ${formatNumber(Math.round(rc.baseline))} baseline: ${formatRatio(rc.ratio, rc.current)}, delta ${formatDelta(rc.delta)}`;
    if (n === 0) return [['Diff (row)', row], ['This cell', 'no data']];
    const cc = cellChange(v, n * view.stepMs, rc, cmp.current_span_ms);
    return [
      ['Diff (row)', row],
      ['This cell', `${formatNumber(v)} now; the row's baseline averages ${cc.expected.toFixed(1)} per cell (${formatRatio(cc.ratio, v)})`],
    ];
  };

  /** @param {import('./interact.js').Cell} c */
  const cellInfo = (c) => (model.view ? { ...describeCell(model.view, c, model.outages), extra: diffLines(c) } : null);

  /** @param {import('./interact.js').Cell} c @param {boolean} isPinned */
  const placeTooltip = (c, isPinned) => {
    const info = cellInfo(c);
    const view = model.view;
    if (!info || !view) return;
    const cw = size.width / view.slots;
    const ch = size.height / view.rowIndex.length;
    showRect(el.cursor, { x: c.slot * cw, y: c.k * ch, w: Math.max(2, cw), h: Math.max(2, ch) });
    showTooltip(el.tooltip, info, (c.slot + 0.5) * cw, (c.k + 0.5) * ch, size.width, isPinned);
  };

  const unpin = () => {
    model.pinned = null;
    hideTooltip(el.tooltip);
    showRect(el.cursor, null);
  };

  /**
   * Zooms the key axis to displayed rows `rows` (contiguous), keeping the time window.
   * @param {number[]} rows
   */
  const zoomToRows = (rows) => {
    const { view, matrix } = model;
    if (!view || !matrix || rows.length === 0) return;
    store.zoomTo(view.from, view.to, rowsKeySpan(rows.map((k) => matrix.rows[view.rowIndex[k]])));
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
    const { view, matrix } = model;
    if (!view || !matrix) return null;
    const row = matrix.rows[view.rowIndex[k]];
    if (!row) return null;
    const range = `[${keyLabel(decodeKey(row.start), 'start', 40)}, ${keyLabel(decodeKey(row.end), 'end', 40)})`;
    return { kind, series: store.state.series, from, to, keyStart: row.start ?? null, keyEnd: row.end ?? null, label: `${rowLabel(row)} ${range}` };
  };

  /** Opens the detail of displayed row `k` and its top keys over the whole view. @param {number} k */
  const openRow = (k) => {
    const view = model.view;
    if (!view) return;
    openDetail(k);
    const sel = selectionOf(k, 'row', view.from, view.to);
    if (sel) void hotKeys.show(sel);
  };

  /** @param {number} k */
  const openDetail = (k) => {
    const { view, matrix } = model;
    if (!view || !matrix) return;
    model.detailBucket = matrix.rows[view.rowIndex[k]].bucket_id;
    renderDetail(el.detail, el.detailList, view, k, notify);
  };
  const closeDetail = () => {
    model.detailBucket = null;
    el.detail.hidden = true;
  };
  el.detailKeys.addEventListener('click', () => {
    const k = model.rowOf(model.detailBucket);
    if (k >= 0) openRow(k);
  });
  // A click on the key axis opens that row (labels may sit a few px off a dense row, so a
  // label's own row wins over the pointer's).
  el.keyAxis.addEventListener('click', (e) => {
    const view = model.view;
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
    geometry: () => (model.view && model.matrix ? { width: size.width, height: size.height, slots: model.view.slots, rows: model.view.rowIndex.length } : null),
    hover: (c, _x, _y, fromKeyboard) => {
      if (model.pinned && !fromKeyboard) return;
      if (fromKeyboard) model.pinned = null;
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
      const { view, matrix } = model;
      if (!view || !matrix) return;
      model.pinned = { ...c, bucket: matrix.rows[view.rowIndex[c.k]].bucket_id, time: view.from + c.slot * view.slotMs };
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
      const { view, matrix } = model;
      if (!view || !matrix) return;
      const from = view.from + sel.slot0 * view.slotMs;
      const to = view.from + sel.slot1 * view.slotMs;
      const all = sel.k0 === 0 && sel.k1 >= view.rowIndex.length;
      const keys = all ? store.state.keys : rowsKeySpan(view.rowIndex.slice(sel.k0, sel.k1).map((ri) => matrix.rows[ri]));
      store.zoomTo(from, to, keys);
    },
    wheel: (factor, at) => {
      const view = model.view;
      if (!view) return;
      const cur = model.wheelWindow ?? { from: view.from, to: view.to };
      const span = Math.max(view.stepMs * 4, (cur.to - cur.from) * factor);
      const anchor = cur.from + (cur.to - cur.from) * at;
      const next = { from: anchor - span * at, to: anchor - span * at + span };
      if (next.to > Date.now() + view.stepMs) {
        next.from -= next.to - Date.now();
        next.to = Date.now();
      }
      model.wheelWindow = next;
      // Instant preview from the buffer we have; the real query follows when the wheel rests.
      drawPreview(el, renderer, view, size, next, model.outages);
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
      void loader.load(false);
    } else if (detail.reason === 'scale') {
      render(true);
    } else if (detail.reason === 'palette') {
      render(false);
    }
    loader.schedule();
  });

  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => render(false));
  new ResizeObserver(() => {
    if (!model.view) return;
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
    if (e.key === 'Escape' && model.pinned) unpin();
  });
  // "Click elsewhere" releases the pin; the detail panel (copy buttons) does not count.
  document.addEventListener('pointerdown', (e) => {
    const t = /** @type {Node|null} */ (e.target);
    if (model.pinned && t && !el.plot.contains(t) && !el.detail.contains(t) && !hotKeys.contains(t)) unpin();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && (store.state.auto || store.state.live) && !loader.loading && model.matrix) void loader.load(store.state.live);
  });

  /** @param {string} query @param {string} what */
  const copy = async (query, what) => {
    const url = `${location.origin}${location.pathname}?${query}`;
    try {
      await navigator.clipboard.writeText(url);
      notify(`${what} copied.`);
    } catch {
      notify(`Copy this link: ${url}`);
    }
  };

  return {
    /** Boots: the stored session opens the app, otherwise the login form. */
    start() {
      showApp(loadSession());
    },
    refresh: () => void loader.load(false),
    /** Zooms to the time extent of the data in view (Back undoes it). */
    fitToData: () => {
      const view = model.view;
      const ext = view ? dataExtent(view) : null;
      if (!ext) return notify('Nothing to fit: no cell in this view has traffic.');
      store.zoomTo(ext.from, ext.to, store.state.keys);
    },
    exportPng: () => {
      const { view } = model;
      const labels = imageLabels();
      if (!view || !labels) return notify('Nothing to export yet.');
      const dark = window.matchMedia('(prefers-color-scheme: dark)').matches;
      exportPng(el.heat, el.hatch, view, labels, dark);
    },
    /** Downloads the incident snapshot: one self-contained HTML file of what is on screen. */
    snapshot: () => {
      const { view, matrix } = model;
      const labels = imageLabels();
      if (!view || !matrix || !labels) return notify('Nothing to snapshot yet.');
      // A light image: the snapshot's page is light whatever the viewer's scheme.
      const img = composeImage(el.heat, el.hatch, view, labels, false);
      if (!img) return notify('The snapshot could not draw the heatmap.');
      const cmp = currentComparison();
      const last = hotKeys.lastView;
      const html = snapshotHtml({
        view,
        png: img.toDataURL('image/png'),
        series: matrix.series,
        scale: cmp ? 'diff (log2 ratio)' : store.state.scale,
        // In diff mode the comparison sentence is the #diff paragraph; #legend says what the
        // colours mean.
        legend: cmp && lastPic
          ? `Colours: blue: less than the baseline, white: no change, orange: more (log2 ratio, ÷${2 ** lastPic.stops} … ×${2 ** lastPic.stops}; the ends also stand for gone and new); light grey: no traffic in either window; mid grey: no data.`
          : labels.legend.text,
        diff: cmp ? labels.legend.text : null,
        window: { from: view.from, to: view.to },
        keys: store.state.keys,
        hotKeys: last && last.sel.series === store.state.series ? last : null,
        fanout: model.main?.fanout,
        query: queryText(),
        link: `${location.origin}${location.pathname}?${pinnedQuery(store.state, view)}`,
        host: location.host,
        takenAt: Date.now(),
      });
      download(new Blob([html], { type: 'text/html' }), `keyviz-snapshot-${matrix.series}-${stamp(view.from)}.html`);
      notify('Snapshot downloaded.');
    },
    exportCsv: () => {
      if (!model.view) return notify('Nothing to export yet.');
      exportCsv(model.view);
    },
    /** Copies a link that pins the window shown as absolute time (it shows the same data later). */
    copyLink: () => {
      const v = model.view;
      return copy(v ? pinnedQuery(store.state, v) : toQuery(store.state), 'Link to this view (pinned to its time window)');
    },
    /** Copies a link that keeps the relative window ("last 15 min", live). */
    copyLiveLink: () => copy(toQuery(store.state), 'Link to the latest data (relative window)'),
    notify,
    rowLabel,
  };
}
