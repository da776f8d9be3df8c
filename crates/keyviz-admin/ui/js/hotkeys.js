// @ts-check
/**
 * The hot-key panels' controller: asks GET /keyviz/hotkeys for the selection the operator
 * clicked (a cell: its row's key range and its column window; a row: its key range and the
 * view's window) and for the whole view (the "Hottest keys" list), and hands the answers to
 * render/hotkeys.js. Each panel keeps at most one request in flight: a newer one aborts the
 * older, and a late answer for an old selection is dropped.
 */

import { ApiError, fetchHotKeys } from './api.js';
import { byId } from './dom.js';
import { renderHotKeysMessage, renderHottestKeys, renderTopKeys } from './render/hotkeys.js';
import { formatDuration, formatTime, formatNumber } from './scales.js';

/** Keys asked for a selection. */
const PANEL_K = 20;
/** Keys listed for the view. */
const LIST_K = 10;

/**
 * What a selection covers.
 * @typedef {object} HotKeySelection
 * @property {'cell'|'row'|'view'} kind
 * @property {import('./types.js').Series} series
 * @property {number} from unix ms, inclusive
 * @property {number} to unix ms, exclusive
 * @property {string|null} keyStart base64, null = first key
 * @property {string|null} keyEnd base64, null = unbounded
 * @property {string} label what the operator clicked, in words
 */

/**
 * What a failed hot-key call means for the operator.
 * @param {unknown} err
 */
export function explainHotKeyError(err) {
  if (err instanceof ApiError) {
    if (err.status === 404) return `This server has no hot-key API (${err.describe()}); upgrade the node to see hot keys.`;
    if (err.status === 503) return `Hot keys are not available on this node (${err.describe()}).`;
    if (err.status === 0 && err.code === 'network_error') return 'The admin server did not answer the hot-key query. Check that the node is running, then try again.';
    return `Loading hot keys failed (${err.describe()}).`;
  }
  return `Loading hot keys failed: ${String(err)}.`;
}

/**
 * @param {{ notify: (message: string) => void, onUnauthorized: () => void, onClose: () => void }} h
 */
export function createHotKeys(h) {
  const el = {
    panel: byId('keys-panel', HTMLElement),
    title: byId('keys-title', HTMLElement),
    scope: byId('keys-scope', HTMLElement),
    status: byId('keys-status', HTMLElement),
    table: byId('keys-body', HTMLTableSectionElement),
    total: byId('keys-total', HTMLElement),
    notes: byId('keys-notes', HTMLUListElement),
    problems: byId('keys-problems', HTMLUListElement),
    close: byId('keys-close', HTMLButtonElement),
    list: byId('hotkeys-list', HTMLOListElement),
    listNotes: byId('hotkeys-notes', HTMLUListElement),
    listProblems: byId('hotkeys-problems', HTMLUListElement),
    listScope: byId('hotkeys-scope', HTMLElement),
  };

  /** @type {AbortController|null} */
  let panelCtl = null;
  /** @type {AbortController|null} */
  let listCtl = null;
  /** series and key range of the view request in flight */
  let listKey = '';
  /** series and key range of the list on screen ('' = none) */
  let shownKey = '';
  /** @type {HotKeySelection|null} */
  let selection = null;
  /** @type {{ sel: HotKeySelection, hot: import('./types.js').HotKeys|null, error: string|null }|null} the view list's last outcome */
  let lastView = null;

  /**
   * @param {HotKeySelection} sel
   * @param {number} k
   * @param {AbortSignal} signal
   */
  const ask = (sel, k, signal) => fetchHotKeys({
    series: sel.series, from: sel.from, to: sel.to, keyStart: sel.keyStart, keyEnd: sel.keyEnd, k, signal,
  });

  /** @param {unknown} err @returns {boolean} true when the error was handled (abort, 401) */
  const handled = (err) => {
    if (err instanceof DOMException && err.name === 'AbortError') return true;
    if (err instanceof ApiError && err.status === 401) {
      h.onUnauthorized();
      return true;
    }
    return false;
  };

  /** @param {HotKeySelection} sel */
  const windowText = (sel) => `${formatTime(sel.from)} → ${formatTime(sel.to)} (${formatDuration(Math.max(1, sel.to - sel.from))})`;

  el.close.addEventListener('click', () => {
    close();
    h.onClose();
  });

  const close = () => {
    panelCtl?.abort();
    panelCtl = null;
    selection = null;
    el.panel.hidden = true;
  };

  return {
    /**
     * Opens the "Top keys" panel for a cell or a row and loads it.
     * @param {HotKeySelection} sel
     */
    async show(sel) {
      panelCtl?.abort();
      const ctl = new AbortController();
      panelCtl = ctl;
      selection = sel;
      el.panel.hidden = false;
      el.panel.dataset.kind = sel.kind;
      el.panel.dataset.state = 'loading';
      el.title.textContent = sel.kind === 'cell' ? 'Top keys of the cell' : 'Top keys of the row';
      el.scope.textContent = `${sel.label} · ${sel.series} · ${windowText(sel)}`;
      el.status.textContent = 'Loading the top keys…';
      renderHotKeysMessage(el.table, 'Loading…');
      el.total.textContent = '';
      el.notes.replaceChildren();
      el.problems.replaceChildren();
      el.problems.hidden = true;
      try {
        const hot = await ask(sel, PANEL_K, ctl.signal);
        if (panelCtl !== ctl) return;
        renderTopKeys(el, hot, h.notify);
        el.status.textContent = hot.keys.length
          ? `Top key: ${hot.keys[0].preview}, ${formatNumber(hot.keys[0].estimate)} ${hot.series} of ${formatNumber(hot.total)}.`
          : 'No key to show.';
        el.panel.dataset.state = 'ready';
      } catch (err) {
        if (panelCtl !== ctl || handled(err)) return;
        const text = explainHotKeyError(err);
        renderHotKeysMessage(el.table, text);
        el.status.textContent = text;
        el.panel.dataset.state = 'error';
      } finally {
        if (panelCtl === ctl) panelCtl = null;
      }
    },

    /**
     * Reloads the "Hottest keys" list for the view.
     * @param {HotKeySelection} sel
     */
    async loadView(sel) {
      // A whole-view query is the heaviest one; while it runs for the same series and key
      // range, a live tick or refresh does not restart it (it would never finish on a slow
      // server) — its answer comes, then the next load asks again.
      const key = `${sel.series}|${sel.keyStart ?? ''}|${sel.keyEnd ?? ''}`;
      if (listCtl && listKey === key) return;
      listCtl?.abort();
      const ctl = new AbortController();
      listCtl = ctl;
      listKey = key;
      // Keys of another series or key range must not stay on screen under the new scope while
      // the new answer is computed; a refresh of the same scope keeps the old list meanwhile.
      if (shownKey !== key) {
        renderHotKeysMessage(el.list, 'Loading the hottest keys…');
        el.listNotes.replaceChildren();
        el.listProblems.replaceChildren();
        el.listProblems.hidden = true;
        shownKey = '';
      }
      el.list.dataset.state = 'loading';
      el.listScope.textContent = `${sel.label} · ${sel.series} · ${windowText(sel)}`;
      try {
        const hot = await ask(sel, LIST_K, ctl.signal);
        if (listCtl !== ctl) return;
        renderHottestKeys({ list: el.list, notes: el.listNotes, problems: el.listProblems }, hot, h.notify);
        lastView = { sel, hot, error: null };
        shownKey = key;
        el.list.dataset.state = 'ready';
      } catch (err) {
        if (listCtl !== ctl || handled(err)) return;
        renderHotKeysMessage(el.list, explainHotKeyError(err));
        lastView = { sel, hot: null, error: explainHotKeyError(err) };
        shownKey = '';
        el.listNotes.replaceChildren();
        el.listProblems.replaceChildren();
        el.list.dataset.state = 'error';
      } finally {
        if (listCtl === ctl) listCtl = null;
      }
    },

    /** Closes the panel (the selection no longer exists, e.g. another series). */
    close,

    /** The "Hottest keys" list's last answer (or error) and its selection; null before any. */
    get lastView() {
      return lastView;
    },

    /** @returns {HotKeySelection|null} the selection the panel shows */
    get selection() {
      return selection;
    },

    /** @param {Node} node @returns {boolean} whether `node` is inside the panel */
    contains(node) {
      return el.panel.contains(node);
    },
  };
}
