// @ts-check
/** Entry point: builds the store from the URL and wires controls, the app and the browser. */

import { createApp } from './app.js';
import { bindControls } from './controls.js';
import { parseQuery, Store } from './state.js';

const store = new Store(parseQuery(location.search));
const app = createApp(store);
bindControls(store, {
  refresh: app.refresh,
  exportPng: app.exportPng,
  exportCsv: app.exportCsv,
  copyLink: () => void app.copyLink(),
  copyLiveLink: () => void app.copyLiveLink(),
  fitToData: () => app.fitToData(),
  snapshot: () => app.snapshot(),
  notify: (m) => app.notify(m),
});
window.addEventListener('popstate', () => store.loadFromUrl());
app.start();
