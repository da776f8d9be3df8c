// @ts-check
/**
 * Turns control inputs into store changes, and mirrors the store back into the inputs. It
 * never fetches or draws; buttons that do more than change state call the actions it is given.
 */

import { byId, toLocalInput } from './dom.js';
import { formatDuration, prefixRange } from './scales.js';

/**
 * @typedef {object} ControlActions
 * @property {() => void} refresh
 * @property {() => void} exportPng
 * @property {() => void} exportCsv
 * @property {() => void} copyLink pins the window shown (absolute time)
 * @property {() => void} copyLiveLink keeps the relative window
 * @property {() => void} fitToData
 * @property {() => void} snapshot downloads the incident snapshot (one HTML file)
 * @property {(message: string) => void} notify
 */

/**
 * @param {import('./state.js').Store} store
 * @param {ControlActions} actions
 */
export function bindControls(store, actions) {
  const form = byId('controls', HTMLFormElement);
  const series = byId('series', HTMLSelectElement);
  const range = byId('range', HTMLSelectElement);
  const custom = byId('custom-range', HTMLFieldSetElement);
  const from = byId('custom-from', HTMLInputElement);
  const to = byId('custom-to', HTMLInputElement);
  const rows = byId('rows', HTMLInputElement);
  const auto = byId('auto', HTMLSelectElement);
  const live = byId('live', HTMLInputElement);
  const scale = byId('scale', HTMLSelectElement);
  const palette = byId('palette', HTMLSelectElement);
  const back = byId('back', HTMLButtonElement);
  const prefix = byId('key-prefix', HTMLInputElement);
  const applyPrefix = () => {
    const text = prefix.value.trim();
    const keys = prefixRange(text);
    if (text && !keys) {
      actions.notify('Key prefix: hex must be 0x followed by pairs of hex digits.');
      return;
    }
    store.setKeys(keys, text);
  };
  byId('key-apply', HTMLButtonElement).addEventListener('click', applyPrefix);
  prefix.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') applyPrefix();
  });

  form.addEventListener('submit', (e) => e.preventDefault());
  series.addEventListener('change', () => store.setSeries(/** @type {any} */ (series.value)));
  range.addEventListener('change', () => store.setRange(/** @type {any} */ (range.value)));
  byId('custom-apply', HTMLButtonElement).addEventListener('click', () => {
    const f = new Date(from.value).getTime();
    const t = new Date(to.value).getTime();
    if (!Number.isFinite(f) || !Number.isFinite(t) || t <= f) {
      actions.notify('Custom range: "To" must be a valid time after "From".');
      return;
    }
    store.setCustomWindow(f, t);
  });
  const commitRows = () => {
    const n = Number(rows.value);
    if (Number.isInteger(n) && n >= 1) store.setRows(n);
    rows.value = String(store.state.rows);
  };
  rows.addEventListener('change', commitRows);
  rows.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') commitRows();
  });
  auto.addEventListener('change', () => store.setAuto(Number(auto.value)));
  live.addEventListener('change', () => store.setLive(live.checked));
  scale.addEventListener('change', () => store.setScale(/** @type {any} */ (scale.value)));
  palette.addEventListener('change', () => store.setPalette(/** @type {any} */ (palette.value)));
  byId('refresh', HTMLButtonElement).addEventListener('click', actions.refresh);
  back.addEventListener('click', () => store.back());
  byId('reset', HTMLButtonElement).addEventListener('click', () => store.reset());
  byId('copy-link', HTMLButtonElement).addEventListener('click', actions.copyLink);
  byId('copy-live-link', HTMLButtonElement).addEventListener('click', actions.copyLiveLink);
  byId('fit', HTMLButtonElement).addEventListener('click', actions.fitToData);
  const spanOption = byId('range-span', HTMLOptionElement);
  const brightValue = byId('bright-value', HTMLOutputElement);
  byId('bright-down', HTMLButtonElement).addEventListener('click', () => store.setBright(store.state.bright - 1));
  byId('bright-up', HTMLButtonElement).addEventListener('click', () => store.setBright(store.state.bright + 1));
  byId('export-png', HTMLButtonElement).addEventListener('click', actions.exportPng);
  byId('export-csv', HTMLButtonElement).addEventListener('click', actions.exportCsv);
  byId('snapshot', HTMLButtonElement).addEventListener('click', actions.snapshot);
  const diff = byId('diff', HTMLSelectElement);
  const diffCustom = byId('diff-custom', HTMLFieldSetElement);
  const diffFrom = byId('diff-from', HTMLInputElement);
  const diffTo = byId('diff-to', HTMLInputElement);
  diff.addEventListener('change', () => {
    if (diff.value === 'custom') {
      // The form opens on the previous window; "Compare" applies it.
      diffCustom.hidden = false;
      if (!diffFrom.value) {
        const now = Date.now();
        diffFrom.value = toLocalInput(now - 2 * 3_600_000);
        diffTo.value = toLocalInput(now - 3_600_000);
      }
      return;
    }
    store.setDiff(/** @type {any} */ (diff.value));
  });
  byId('diff-apply', HTMLButtonElement).addEventListener('click', () => {
    const f = new Date(diffFrom.value).getTime();
    const t = new Date(diffTo.value).getTime();
    if (!Number.isFinite(f) || !Number.isFinite(t) || t <= f) {
      actions.notify('Custom baseline: "Baseline to" must be a valid time after "Baseline from".');
      return;
    }
    store.setDiff('custom', f, t);
  });

  const sync = () => {
    const s = store.state;
    series.value = s.series;
    // "Last <width>" exists only while Live follows a zoomed window's width.
    spanOption.hidden = s.range !== 'span';
    spanOption.textContent = s.range === 'span' ? `Last ${formatDuration(s.span)}` : 'Last …';
    range.value = s.range;
    custom.hidden = s.range !== 'custom';
    if (s.range === 'custom') {
      from.value = toLocalInput(s.from);
      to.value = toLocalInput(s.to);
    }
    if (document.activeElement !== rows) rows.value = String(s.rows);
    auto.value = String(s.auto);
    live.checked = s.live;
    scale.value = s.scale;
    palette.value = s.palette;
    if (document.activeElement !== prefix) prefix.value = s.prefix;
    if (document.activeElement !== diff) diff.value = s.diff;
    if (s.diff === 'custom') {
      diffCustom.hidden = false;
      diffFrom.value = toLocalInput(s.bfrom);
      diffTo.value = toLocalInput(s.bto);
    } else if (diff.value !== 'custom') {
      diffCustom.hidden = true;
    }
    brightValue.textContent = s.bright >= 0 ? `×${2 ** s.bright}` : `×1/${2 ** -s.bright}`;
    // aria-disabled rather than disabled: the button stays in the tab order.
    back.setAttribute('aria-disabled', String(store.zoomStack.length === 0));
  };
  store.addEventListener('change', sync);
  sync();
}
