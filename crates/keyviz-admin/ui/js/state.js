// @ts-check
/**
 * The view-state store. It changes only through named methods; each change writes the whole
 * state into the URL query string (so every view is a permalink) and dispatches a `change`
 * event whose detail says whether the data must be fetched again or only redrawn.
 */

import { prefixRange, PRESET_MS } from './scales.js';

const SERIES = /** @type {const} */ (['writes', 'reads', 'write_bytes', 'read_bytes']);
const RANGES = /** @type {const} */ (['auto', '5m', '15m', '1h', '6h', '24h', '7d', 'custom', 'span']);
/** The default window: while the history is younger, `auto` shows less (see fitPreset). */
export const DEFAULT_WINDOW_MS = PRESET_MS['1h'];
/** Narrowest and widest `span` (Live from a zoomed window): 10 s .. 7 days. */
const SPAN_MIN_MS = 10_000;
const SPAN_MAX_MS = PRESET_MS['7d'];
const AUTOS = [0, 5, 30];
export const MAX_ROWS = 1024;
/** Brightness exponents (the top colour at max / 2^bright). */
export const BRIGHT_MIN = -2;
export const BRIGHT_MAX = 8;

/** @returns {import('./types.js').ViewState} */
export function defaultState() {
  return {
    series: 'writes', range: 'auto', from: 0, to: 0, rows: 256, auto: 0, live: false,
    scale: 'log', palette: 'heat', keys: null, prefix: '', span: 0, bright: 0,
    diff: 'off', bfrom: 0, bto: 0,
  };
}

/**
 * Parses a query string into a full state; unknown or malformed values fall back to defaults,
 * so a hand-edited link still opens.
 * @param {string} search
 * @returns {import('./types.js').ViewState}
 */
export function parseQuery(search) {
  const q = new URLSearchParams(search);
  const s = defaultState();
  const series = q.get('series');
  if (series && /** @type {readonly string[]} */ (SERIES).includes(series)) s.series = /** @type {import('./types.js').Series} */ (series);
  const range = q.get('range');
  if (range && /** @type {readonly string[]} */ (RANGES).includes(range)) s.range = /** @type {import('./types.js').RangePreset} */ (range);
  const from = Number(q.get('from'));
  const to = Number(q.get('to'));
  if (s.range === 'custom') {
    if (Number.isFinite(from) && Number.isFinite(to) && from > 0 && to > from) {
      s.from = Math.floor(from);
      s.to = Math.ceil(to);
    } else {
      s.range = 'auto';
    }
  }
  if (s.range === 'span') {
    const span = Number(q.get('span'));
    if (Number.isFinite(span) && span >= SPAN_MIN_MS && span <= SPAN_MAX_MS) s.span = Math.round(span);
    else s.range = 'auto';
  }
  const rows = Number(q.get('rows'));
  if (Number.isInteger(rows) && rows >= 1) s.rows = Math.min(MAX_ROWS, rows);
  const auto = Number(q.get('auto'));
  if (AUTOS.includes(auto)) s.auto = auto;
  s.live = q.get('live') === '1';
  const scale = q.get('scale');
  if (scale === 'linear' || scale === 'log') s.scale = scale;
  const palette = q.get('palette');
  if (palette === 'heat' || palette === 'viridis') s.palette = palette;
  const bright = Number(q.get('bright'));
  if (Number.isInteger(bright) && bright >= BRIGHT_MIN && bright <= BRIGHT_MAX) s.bright = bright;
  const diff = q.get('diff');
  if (diff === 'prev' || diff === 'day') s.diff = diff;
  if (diff === 'custom') {
    const bf = Number(q.get('bfrom'));
    const bt = Number(q.get('bto'));
    if (Number.isFinite(bf) && Number.isFinite(bt) && bf > 0 && bt > bf) {
      s.diff = 'custom';
      s.bfrom = Math.floor(bf);
      s.bto = Math.ceil(bt);
    }
  }
  if (q.has('kstart') || q.has('kend')) {
    const ks = q.get('kstart');
    const ke = q.get('kend');
    s.keys = { start: ks ? ks : null, end: ke ? ke : null };
  }
  // The prefix box comes back with its text; a prefix alone (hand-written link) sets the keys.
  const prefix = (q.get('prefix') ?? '').trim();
  const keys = prefix ? prefixRange(prefix) : null;
  if (keys) {
    s.prefix = prefix;
    if (!s.keys) s.keys = keys;
  }
  return s;
}

/**
 * Serialises the state; parseQuery(toQuery(s)) equals s for every valid s.
 * @param {import('./types.js').ViewState} s
 */
export function toQuery(s) {
  const q = new URLSearchParams();
  q.set('series', s.series);
  q.set('range', s.range);
  if (s.range === 'custom') {
    q.set('from', String(s.from));
    q.set('to', String(s.to));
  }
  if (s.range === 'span') q.set('span', String(s.span));
  q.set('rows', String(s.rows));
  if (s.auto) q.set('auto', String(s.auto));
  if (s.live) q.set('live', '1');
  q.set('scale', s.scale);
  q.set('palette', s.palette);
  if (s.bright) q.set('bright', String(s.bright));
  if (s.keys) {
    q.set('kstart', s.keys.start ?? '');
    q.set('kend', s.keys.end ?? '');
  }
  if (s.prefix) q.set('prefix', s.prefix);
  if (s.diff !== 'off') q.set('diff', s.diff);
  if (s.diff === 'custom') {
    q.set('bfrom', String(s.bfrom));
    q.set('bto', String(s.bto));
  }
  return q.toString();
}

/**
 * The concrete [from, to) window a state asks for at time `now` (presets end at now).
 * @param {import('./types.js').ViewState} s
 * @param {number} now
 */
export function windowOf(s, now) {
  if (s.range === 'custom') return { from: s.from, to: s.to };
  if (s.range === 'span') return { from: now - s.span, to: now };
  if (s.range === 'auto') return { from: now - DEFAULT_WINDOW_MS, to: now };
  return { from: now - PRESET_MS[s.range], to: now };
}

/**
 * A shareable query for `s` that pins the window shown (`shown`, unix ms) as absolute time:
 * a link opened later shows the same data, not "the last hour" of another day. Live is
 * dropped (a pinned window does not slide); every other control is kept.
 * @param {import('./types.js').ViewState} s
 * @param {{ from: number, to: number }} shown
 */
export function pinnedQuery(s, shown) {
  return toQuery({ ...s, range: 'custom', from: Math.floor(shown.from), to: Math.ceil(shown.to), span: 0, live: false });
}

/**
 * @typedef {object} ChangeDetail
 * @property {boolean} refetch the data must be fetched again
 * @property {string} reason which method caused the change
 */

/**
 * @param {import('./types.js').KeyRange|null} a
 * @param {import('./types.js').KeyRange|null} b
 */
function sameKeys(a, b) {
  return (a?.start ?? null) === (b?.start ?? null) && (a?.end ?? null) === (b?.end ?? null) && (a === null) === (b === null);
}

export class Store extends EventTarget {
  /** @param {import('./types.js').ViewState} initial */
  constructor(initial) {
    super();
    /** @type {import('./types.js').ViewState} */
    this.state = initial;
    /** @type {import('./types.js').ViewState[]} zoom history, oldest first */
    this.zoomStack = [];
  }

  /** @returns {import('./types.js').ViewState} a copy of the current view */
  get() {
    return { ...this.state, keys: this.state.keys ? { ...this.state.keys } : null };
  }

  /**
   * @param {Partial<import('./types.js').ViewState>} patch
   * @param {boolean} refetch
   * @param {string} reason
   */
  #apply(patch, refetch, reason) {
    this.state = { ...this.state, ...patch };
    const url = `${location.pathname}?${toQuery(this.state)}`;
    history.replaceState(null, '', url);
    this.dispatchEvent(new CustomEvent('change', { detail: /** @type {ChangeDetail} */ ({ refetch, reason }) }));
  }

  /** @param {import('./types.js').Series} series */
  setSeries(series) { this.#apply({ series }, true, 'series'); }

  /** @param {import('./types.js').RangePreset} range a preset; 'custom' keeps the current window */
  setRange(range) {
    if (range === 'custom') {
      const w = windowOf(this.state, Date.now());
      this.#apply({ range, from: Math.floor(w.from), to: Math.ceil(w.to), span: 0, live: false }, true, 'range');
    } else {
      this.#apply({ range, from: 0, to: 0, span: range === 'span' ? this.state.span : 0 }, true, 'range');
    }
  }

  /**
   * @param {number} from unix ms
   * @param {number} to unix ms, > from
   */
  setCustomWindow(from, to) {
    if (!(to > from)) return;
    this.#apply({ range: 'custom', from: Math.floor(from), to: Math.ceil(to), span: 0, live: false }, true, 'custom');
  }

  /** @param {number} rows clamped to 1..MAX_ROWS */
  setRows(rows) {
    const r = Math.min(MAX_ROWS, Math.max(1, Math.floor(rows)));
    if (r !== this.state.rows) this.#apply({ rows: r }, true, 'rows');
  }

  /** @param {number} auto seconds: 0, 5 or 30 */
  setAuto(auto) { this.#apply({ auto: AUTOS.includes(auto) ? auto : 0 }, false, 'auto'); }

  /** @param {boolean} live */
  setLive(live) {
    // Live mode follows "now": a zoomed (custom) window keeps its width and its key range and
    // slides, as "the last <width>".
    if (live && this.state.range === 'custom') {
      const span = Math.min(SPAN_MAX_MS, Math.max(SPAN_MIN_MS, this.state.to - this.state.from));
      this.#apply({ live, range: 'span', span, from: 0, to: 0 }, true, 'live');
      return;
    }
    this.#apply({ live }, live, 'live');
  }

  /** @param {import('./types.js').ScaleKind} scale */
  setScale(scale) { this.#apply({ scale }, false, 'scale'); }

  /** @param {import('./types.js').PaletteName} palette */
  setPalette(palette) { this.#apply({ palette }, false, 'palette'); }

  /** @param {number} bright clamped to BRIGHT_MIN..BRIGHT_MAX; a redraw, no fetch */
  setBright(bright) {
    const b = Math.min(BRIGHT_MAX, Math.max(BRIGHT_MIN, Math.round(bright)));
    if (b !== this.state.bright) this.#apply({ bright: b }, false, 'palette');
  }

  /**
   * Diff mode: compare with a baseline window (refetches: the comparison comes with the
   * matrix). A custom baseline needs `bto > bfrom`; otherwise the call is ignored.
   * @param {import('./types.js').DiffMode} diff
   * @param {number} [bfrom]
   * @param {number} [bto]
   */
  setDiff(diff, bfrom = 0, bto = 0) {
    if (diff === 'custom') {
      if (!(bto > bfrom && bfrom > 0)) return;
      this.#apply({ diff, bfrom: Math.floor(bfrom), bto: Math.ceil(bto) }, true, 'diff');
      return;
    }
    this.#apply({ diff, bfrom: 0, bto: 0 }, true, 'diff');
  }

  /**
   * Zooms to a time window and optionally a key range, remembering the previous view for back().
   * @param {number} from
   * @param {number} to
   * @param {import('./types.js').KeyRange|null} keys
   */
  zoomTo(from, to, keys) {
    if (!(to > from)) return;
    this.zoomStack.push(this.get());
    const prefix = sameKeys(keys, this.state.keys) ? this.state.prefix : '';
    this.#apply({ range: 'custom', from: Math.floor(from), to: Math.ceil(to), span: 0, keys, prefix, live: false }, true, 'zoom');
  }

  /**
   * Restricts the rows to a key range (or all keys with null), keeping the time window; like a
   * zoom it can be undone with back().
   * @param {import('./types.js').KeyRange|null} keys
   * @param {string} [prefix] the key-prefix text `keys` came from, shown again in its box
   */
  setKeys(keys, prefix = '') {
    this.zoomStack.push(this.get());
    this.#apply({ keys, prefix: keys ? prefix : '' }, true, 'keys');
  }

  /** Returns to the view before the last zoom; false when there is none. */
  back() {
    const prev = this.zoomStack.pop();
    if (!prev) return false;
    this.#apply(prev, true, 'back');
    return true;
  }

  /**
   * Drops every zoom: the first remembered view, or the default window, always with all keys
   * (a key range opened from a permalink is a zoom too).
   */
  reset() {
    const first = this.zoomStack[0];
    this.zoomStack = [];
    if (first) this.#apply({ ...first, keys: null, prefix: '' }, true, 'reset');
    else this.#apply({ range: 'auto', from: 0, to: 0, span: 0, keys: null, prefix: '' }, true, 'reset');
  }

  /** Re-reads the state from the URL (browser back/forward). */
  loadFromUrl() {
    this.#apply(parseQuery(location.search), true, 'url');
  }
}
