// @ts-check
/**
 * The signed-in session as the page knows it: role and expiry mirrored to sessionStorage (the
 * session cookie itself is HttpOnly). A timer fires at expiry so the page returns to the login
 * form without waiting for a 401.
 */

const KEY = 'keyviz-admin.session.v1';

/** @returns {import('./types.js').Session|null} the stored session unless missing or expired */
export function loadSession() {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const s = JSON.parse(raw);
    if (typeof s?.role !== 'string' || typeof s?.expires_at !== 'string') throw new Error('shape');
    const exp = Date.parse(s.expires_at);
    if (Number.isFinite(exp) && exp <= Date.now()) throw new Error('expired');
    return { role: s.role, expires_at: s.expires_at };
  } catch {
    sessionStorage.removeItem(KEY);
    return null;
  }
}

/** @param {import('./types.js').Session} s */
export function saveSession(s) {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

/** @type {number|undefined} */
let timer;

/**
 * Calls `onExpire` when the session's expires_at passes (never for an unparsable time).
 * @param {import('./types.js').Session} s
 * @param {() => void} onExpire
 */
export function armExpiry(s, onExpire) {
  clearTimeout(timer);
  const ms = Date.parse(s.expires_at) - Date.now();
  // setTimeout overflows above 2^31-1 ms (~24.8 days); such sessions simply rely on the 401 path.
  if (Number.isFinite(ms) && ms < 2 ** 31 - 1) timer = window.setTimeout(onExpire, Math.max(0, ms));
}

export function disarmExpiry() {
  clearTimeout(timer);
}
