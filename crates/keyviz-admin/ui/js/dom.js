// @ts-check
/** Small DOM helpers shared by the controllers and renderers (no state of their own). */

/**
 * The element with id `id`, checked to be a `type`; throws when the page lacks it (a broken
 * index.html should fail loudly at start-up, not later with a null dereference).
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{ new(): T }} type
 * @returns {T}
 */
export function byId(id, type) {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`missing #${id}`);
  return el;
}

/**
 * A new element with `className` and text (always through textContent: keys are user data).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function make(tag, className = '', text = '') {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text) el.textContent = text;
  return el;
}

/**
 * Formats unix ms for a datetime-local input (local time, seconds precision).
 * @param {number} ms
 */
export function toLocalInput(ms) {
  const d = new Date(ms);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Parses a CSS colour custom property (#rgb or #rrggbb) into RGB; `fallback` otherwise.
 * @param {string} name
 * @param {[number, number, number]} fallback
 * @returns {[number, number, number]}
 */
export function cssRgb(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(v);
  if (!m) return fallback;
  const hex = m[1].length === 3 ? [...m[1]].map((c) => c + c).join('') : m[1];
  return [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16), parseInt(hex.slice(4, 6), 16)];
}
