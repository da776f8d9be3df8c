// @ts-check
import { normalizeLeaders } from './leaders.js';
/**
 * The only module that knows URLs. Wraps fetch with the admin conventions: same-origin
 * cookies, the X-Admin-CSRF double-submit header on writes, the {"error","message"} envelope
 * mapped to ApiError, and AbortController so a superseded matrix call is cancelled.
 */

const BASE = '/admin/api/v1';

/** A failed API call; `status` 0 means the network failed or the answer was not JSON. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message || code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }

  /** "code: message", or just the code when the message adds nothing. */
  describe() {
    return this.message && this.message !== this.code ? `${this.code}: ${this.message}` : this.code;
  }
}

/** @returns {string} the admin_csrf cookie value, or "" when absent. */
function csrfToken() {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === 'admin_csrf') return decodeURIComponent(v.join('='));
  }
  return '';
}

/**
 * @param {string} method
 * @param {string} path
 * @param {{ query?: Record<string, string|number|undefined>, body?: unknown, signal?: AbortSignal }} [opts]
 * @returns {Promise<any>}
 */
async function call(method, path, opts = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [k, v] of Object.entries(opts.query ?? {})) {
    if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
  }
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') {
    const token = csrfToken();
    if (token) headers['X-Admin-CSRF'] = token;
  }
  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      credentials: 'same-origin',
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network_error', 'the admin server could not be reached');
  }
  if (res.status === 204) return undefined;
  const type = res.headers.get('content-type') ?? '';
  if (!type.includes('application/json')) {
    throw new ApiError(res.status, 'non_json_response', `HTTP ${res.status} (${type || 'no content type'})`);
  }
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(res.status, 'invalid_json', `HTTP ${res.status}: the body is not valid JSON`);
  }
  if (!res.ok) {
    const code = typeof body?.error === 'string' ? body.error : 'request_failed';
    const message = typeof body?.message === 'string' ? body.message : '';
    throw new ApiError(res.status, code, message);
  }
  return body;
}

/**
 * Signs in; the server sets the session and CSRF cookies.
 * @param {string} accessKey
 * @param {string} secretKey
 * @returns {Promise<import('./types.js').Session>}
 */
export async function login(accessKey, secretKey) {
  const body = await call('POST', '/auth/login', { body: { access_key: accessKey, secret_key: secretKey } });
  return { role: String(body?.role ?? ''), expires_at: String(body?.expires_at ?? '') };
}

/** Signs out; a 401 (already expired) counts as success. */
export async function logout() {
  try {
    await call('POST', '/auth/logout');
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) throw err;
  }
}

/**
 * @typedef {object} MatrixParams
 * @property {import('./types.js').WireSeries} series
 * @property {number} [from] unix ms, inclusive
 * @property {number} [to] unix ms, exclusive
 * @property {number} rows
 * @property {string|null} [keyStart] base64 (as on the wire), inclusive; null/"" = first key
 * @property {string|null} [keyEnd] base64, exclusive; null = unbounded
 * @property {{ from: number, to: number }|null} [baseline] diff mode: the baseline window the
 *   answer is compared with (its `compare` field)
 */

/** @type {Map<string, AbortController>} the call in flight per slot */
const matrixInFlight = new Map();

/**
 * Fetches the matrix. A newer call in the same `slot` aborts the older one (which rejects
 * with an AbortError); the loader gives each series of a view its own slot.
 * @param {MatrixParams} p
 * @param {string} [slot]
 * @returns {Promise<import('./types.js').Matrix>}
 */
export async function fetchMatrix(p, slot = 'main') {
  matrixInFlight.get(slot)?.abort();
  const ctl = new AbortController();
  matrixInFlight.set(slot, ctl);
  try {
    const m = await call('GET', '/keyviz/matrix', {
      query: {
        series: p.series,
        from_unix_ms: p.from && p.from > 0 ? Math.floor(p.from) : undefined,
        to_unix_ms: p.to && p.to > 0 ? Math.ceil(p.to) : undefined,
        rows: p.rows,
        // The server keeps only rows overlapping [key_start, key_end) before its row budget,
        // so a key zoom gets finer rows rather than a slice of the coarse ones.
        key_start: p.keyStart || undefined,
        key_end: p.keyEnd ?? undefined,
        baseline_from_unix_ms: p.baseline ? Math.floor(p.baseline.from) : undefined,
        baseline_to_unix_ms: p.baseline ? Math.ceil(p.baseline.to) : undefined,
      },
      signal: ctl.signal,
    });
    return normalizeMatrix(m);
  } finally {
    if (matrixInFlight.get(slot) === ctl) matrixInFlight.delete(slot);
  }
}

/**
 * @typedef {object} HotKeyParams
 * @property {import('./types.js').Series} series
 * @property {number} [from] unix ms, inclusive (window start)
 * @property {number} [to] unix ms, exclusive
 * @property {string|null} [keyStart] base64, inclusive; null/"" = first key
 * @property {string|null} [keyEnd] base64, exclusive; null = unbounded
 * @property {number} [k] keys wanted (1..1000)
 * @property {AbortSignal} [signal]
 */

/**
 * The hottest keys of a key range and time window, cluster-wide, with bounds.
 * @param {HotKeyParams} p
 * @returns {Promise<import('./types.js').HotKeys>}
 */
export async function fetchHotKeys(p) {
  const h = await call('GET', '/keyviz/hotkeys', {
    query: {
      series: p.series,
      from_unix_ms: p.from && p.from > 0 ? Math.floor(p.from) : undefined,
      to_unix_ms: p.to && p.to > 0 ? Math.ceil(p.to) : undefined,
      key_start: p.keyStart || undefined,
      key_end: p.keyEnd ?? undefined,
      k: p.k,
    },
    signal: p.signal,
  });
  return normalizeHotKeys(h);
}

/**
 * Checks the hot-key answer's shape at the boundary: keys an array of entries with numeric
 * counts, total and floor numbers. Malformed input becomes an ApiError.
 * @param {any} h
 * @returns {import('./types.js').HotKeys}
 */
export function normalizeHotKeys(h) {
  const num = (/** @type {unknown} */ v) => typeof v === 'number' && Number.isFinite(v);
  if (!h || !Array.isArray(h.keys) || !num(h.total)) {
    throw new ApiError(0, 'invalid_hotkeys', 'the hot-key response is missing keys or total');
  }
  for (const k of h.keys) {
    if (!k || typeof k.key !== 'string' || !num(k.estimate) || !num(k.lower) || !num(k.upper)) {
      throw new ApiError(0, 'invalid_hotkeys', 'a hot key lacks key, estimate, lower or upper');
    }
    if (!num(k.share)) k.share = h.total > 0 ? k.estimate / h.total : 0;
    if (typeof k.preview !== 'string') k.preview = '';
  }
  if (!num(h.floor)) h.floor = 0;
  h.sampled = h.sampled === true;
  if (!Array.isArray(h.warnings)) h.warnings = [];
  return /** @type {import('./types.js').HotKeys} */ (h);
}

/**
 * Cluster members and reachability (free-form; shown as-is in the nodes panel).
 * @returns {Promise<unknown>}
 */
export function fetchNodes() {
  return call('GET', '/keyviz/nodes');
}

/**
 * Checks the shape once, at the boundary, so the renderers can trust it: arrays present and
 * parallel, values numeric. Malformed input becomes an ApiError rather than a broken canvas.
 * @param {any} m
 * @returns {import('./types.js').Matrix}
 */
export function normalizeMatrix(m) {
  if (!m || !Array.isArray(m.column_unix_ms) || !Array.isArray(m.rows)) {
    throw new ApiError(0, 'invalid_matrix', 'the matrix response is missing column_unix_ms or rows');
  }
  const cols = m.column_unix_ms.length;
  for (const row of m.rows) {
    if (!row || !Array.isArray(row.values) || row.values.length !== cols) {
      throw new ApiError(0, 'invalid_matrix', `row ${row?.bucket_id ?? '?'} has ${row?.values?.length ?? 0} values for ${cols} columns`);
    }
    if (row.start === undefined) row.start = null;
    if (row.end === undefined) row.end = null;
  }
  // Coverage is advisory: a malformed entry is dropped rather than failing the heatmap.
  const num = (/** @type {unknown} */ v) => typeof v === 'number' && Number.isFinite(v);
  m.coverage = Array.isArray(m.coverage)
    ? m.coverage.filter((/** @type {any} */ c) => c && typeof c.node === 'string' && Array.isArray(c.missing))
      .map((/** @type {any} */ c) => ({ ...c, missing: c.missing.filter((/** @type {any} */ r) => Array.isArray(r) && num(r[0]) && num(r[1]) && r[1] > r[0]) }))
    : undefined;
  // Term leaders are advisory too: malformed entries are dropped.
  m.leaders = normalizeLeaders(m.leaders);
  // A comparison that does not have one entry per row cannot be drawn: drop it (the page
  // then says the comparison is unavailable) rather than colour the wrong rows.
  const c = m.compare;
  if (c !== undefined) {
    const ok = c && Array.isArray(c.rows) && c.rows.length === m.rows.length && num(c.current_span_ms)
      && num(c.baseline_from_unix_ms) && num(c.baseline_to_unix_ms)
      && c.rows.every((/** @type {any} */ r) => r && typeof r.bucket_id === 'string' && num(r.current) && num(r.baseline) && num(r.delta) && (r.ratio === null || num(r.ratio)));
    if (!ok) m.compare = undefined;
  }
  return /** @type {import('./types.js').Matrix} */ (m);
}
