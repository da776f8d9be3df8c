// @ts-check
/** The hover/pinned tooltip: a definition list filled with textContent. */

/**
 * @typedef {object} CellInfo
 * @property {number} k displayed row position
 * @property {number} slot X slot
 * @property {number} col matrix column (-1 = no data)
 * @property {string} time
 * @property {string} keys
 * @property {string} value
 * @property {string} raft
 * @property {boolean} readRole `raft` names the role that served reads, not a term
 * @property {string} conflict
 * @property {string} bucket
 * @property {[string, string][]} [extra] more lines (diff mode: the cell and its row against the baseline)
 */

/**
 * @param {HTMLElement} el
 * @param {CellInfo} info
 * @param {number} x px relative to the plot
 * @param {number} y
 * @param {number} plotWidth
 * @param {boolean} pinned
 */
export function showTooltip(el, info, x, y, plotWidth, pinned) {
  const dl = document.createElement('dl');
  /** @type {[string, string][]} */
  const lines = [
    ['Time', info.time],
    ['Keys', info.keys],
    ['Value', info.value],
    [info.readRole ? 'Raft group / served by' : 'Raft group / term', info.raft],
    ['Conflict', info.conflict],
    ['Bucket', info.bucket],
    ...(info.extra ?? []),
  ];
  for (const [k, v] of lines) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dl.append(dt, dd);
  }
  const children = [dl];
  if (pinned) {
    const hint = document.createElement('p');
    hint.className = 'hint';
    hint.textContent = 'Pinned — Esc or click elsewhere to release.';
    children.push(/** @type {any} */ (hint));
  }
  el.replaceChildren(...children);
  el.hidden = false;
  el.classList.toggle('pinned', pinned);
  const left = x + 16 + 280 > plotWidth ? Math.max(0, x - 296) : x + 16;
  el.style.left = `${left}px`;
  el.style.top = `${y + 12}px`;
}

/** @param {HTMLElement} el */
export function hideTooltip(el) {
  el.hidden = true;
  el.classList.remove('pinned');
}
