// @ts-check
/**
 * The loader: fetches the matrices of a view (its series, the other direction for the row
 * layout, the leader reads for the read roles), appends only the newest columns in live mode,
 * polls, and drops late answers. It has no DOM and no module state: the fetch function, the
 * clock and the timers are given, so node --test drives it with fakes.
 */

import { baselineOf } from './diff.js';
import { windowOf } from './state.js';
import { appendColumns, stepOf } from './view.js';
import { seriesPlan } from './viewstate.js';

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
 * @typedef {object} LoadResult
 * @property {import('./types.js').Matrix[]} matrices in `plan` order; a companion that failed
 *   is left out (the view then has only its own rows), the main one never is
 * @property {string[]} plan the series asked for
 * @property {{ from: number, to: number }} window the window fetched
 * @property {boolean} appended a live tick that appended columns
 */

/**
 * @typedef {object} LoaderDeps
 * @property {() => import('./types.js').ViewState} state the current view state
 * @property {() => import('./types.js').Matrix[]} loaded the matrices shown now (plan order), [] when none
 * @property {(p: import('./api.js').MatrixParams, slot: string) => Promise<import('./types.js').Matrix>} fetchMatrix
 * @property {() => number} now
 * @property {(first: boolean) => void} onStart a load begins (first = nothing shown yet)
 * @property {(r: LoadResult) => void} onLoaded
 * @property {(err: unknown) => void} onError a failure that is not an abort nor superseded
 * @property {() => boolean} hidden whether the page is hidden (polling skips ticks then)
 * @property {(fn: () => void, ms: number) => number} setInterval
 * @property {(id: number|undefined) => void} clearInterval
 */

/** @param {unknown} err */
const isAbort = (err) => typeof err === 'object' && err !== null && /** @type {{ name?: unknown }} */ (err).name === 'AbortError';

/**
 * @param {LoaderDeps} d
 */
export function createLoader(d) {
  let loading = false;
  let seq = 0;
  /** @type {number|undefined} */
  let timer;

  /**
   * Live tick: re-asks every matrix for its last two columns on (peers flush at slightly
   * different moments) and appends; null when any cannot be appended (new buckets, a split)
   * and the whole window must be fetched again.
   * @param {import('./types.js').Matrix[]} have
   * @param {import('./types.js').ViewState} s
   * @param {{ from: number, to: number }} w
   * @param {string[]} plan
   */
  const appendAll = async (have, s, w, plan) => {
    if (have.length !== plan.length || have.some((m, i) => m.series !== plan[i] || m.column_unix_ms.length === 0)) return null;
    const deltas = await Promise.all(have.map((m, i) => {
      const after = m.column_unix_ms[m.column_unix_ms.length - 1] - stepOf(m);
      return d.fetchMatrix({ series: /** @type {any} */ (plan[i]), from: after, rows: s.rows, ...keyParams(s.keys) }, plan[i]);
    }));
    const out = [];
    for (let i = 0; i < have.length; i++) {
      const step = stepOf(have[i]);
      const next = appendColumns(have[i], deltas[i], Math.floor(w.from / step) * step);
      if (!next) return null;
      out.push(next);
    }
    return out;
  };

  /**
   * Loads the view. `append` (live mode) fetches only the newest columns when it can. Resolves
   * when done; a newer load supersedes this one (its answer is then dropped).
   * @param {boolean} append
   */
  const load = async (append) => {
    const s = d.state();
    const w = windowOf(s, d.now());
    const plan = seriesPlan(s.series);
    const my = ++seq;
    loading = true;
    const have = d.loaded();
    d.onStart(have.length === 0);
    try {
      // A comparison covers the whole window: diff mode always fetches it again.
      const baseline = baselineOf(s, w);
      let matrices = append && have.length && !baseline ? await appendAll(have, s, w, plan) : null;
      const appended = matrices !== null;
      let got = plan;
      if (my !== seq) return;
      if (!matrices) {
        const to = s.range === 'custom' ? w.to : undefined;
        const calls = plan.map((series, i) => d.fetchMatrix({ series: /** @type {any} */ (series), from: w.from, to, rows: s.rows, ...keyParams(s.keys), baseline: i === 0 ? baseline : null }, series));
        // The main series decides success; a failed companion only costs the shared layout.
        const results = await Promise.allSettled(calls);
        if (results[0].status === 'rejected') throw results[0].reason;
        matrices = [];
        got = [];
        results.forEach((r, i) => {
          if (r.status === 'fulfilled') {
            matrices?.push(r.value);
            got.push(plan[i]);
          }
        });
      }
      if (my !== seq) return;
      d.onLoaded({ matrices, plan: got, window: w, appended });
    } catch (err) {
      if (isAbort(err) || my !== seq) return;
      d.onError(err);
    } finally {
      if (my === seq) loading = false;
    }
  };

  const stop = () => {
    d.clearInterval(timer);
    timer = undefined;
  };

  /** (Re)arms polling from the state: auto-refresh period, else 5 s in live mode, else none. */
  const schedule = () => {
    stop();
    const s = d.state();
    const period = s.auto > 0 ? s.auto : s.live ? 5 : 0;
    if (period === 0) return;
    timer = d.setInterval(() => {
      // Skip ticks while hidden or while the previous request is still running: polling must
      // not pile up behind a slow server.
      if (d.hidden() || loading) return;
      void load(d.state().live);
    }, period * 1000);
  };

  return {
    load,
    schedule,
    stop,
    /** Whether a load is running. */
    get loading() { return loading; },
    /** Whether polling is armed. */
    get polling() { return timer !== undefined; },
  };
}
