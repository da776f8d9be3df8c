// @ts-check
/**
 * The sign-in form and the session chrome in the header (role pill, Sign out). Only says
 * when a session starts or ends; what the page shows meanwhile is the controller's business.
 */

import { ApiError, login, logout } from './api.js';
import { byId } from './dom.js';
import { clearSession, saveSession } from './session.js';

/**
 * @param {{ onSignedIn: (s: import('./types.js').Session) => void, onSignedOut: () => void }} handlers
 */
export function createLoginView(handlers) {
  const view = byId('login-view', HTMLElement);
  const form = byId('login-form', HTMLFormElement);
  const reason = byId('login-reason', HTMLElement);
  const error = byId('login-error', HTMLElement);
  const submit = byId('login-submit', HTMLButtonElement);
  const accessKey = byId('access-key', HTMLInputElement);
  const secretKey = byId('secret-key', HTMLInputElement);
  const role = byId('role', HTMLElement);
  const signOut = byId('logout', HTMLButtonElement);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const access = accessKey.value.trim();
    const secret = secretKey.value;
    if (!access || !secret) {
      error.textContent = 'Enter both the access key and the secret key.';
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    error.textContent = '';
    try {
      const s = await login(access, secret);
      saveSession(s);
      secretKey.value = '';
      handlers.onSignedIn(s);
    } catch (err) {
      const status = err instanceof ApiError ? err.status : 0;
      error.textContent =
        status === 429 ? 'Too many attempts. Wait a minute and try again.'
          : status === 401 ? 'Invalid access key or secret key.'
            : status === 403 ? 'This access key is not authorised for the admin dashboard.'
              : err instanceof ApiError ? `Sign-in failed: ${err.describe()}.` : `Sign-in failed: ${String(err)}.`;
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });

  signOut.addEventListener('click', async () => {
    try {
      await logout();
    } catch (err) {
      // The local session ends anyway; the server-side one expires on its own.
      console.warn('logout failed', err);
    }
    clearSession();
    handlers.onSignedOut();
  });

  return {
    /** Shows the form with `why` above it, and hides the session chrome. */
    show(/** @type {string} */ why) {
      view.hidden = false;
      role.hidden = true;
      signOut.hidden = true;
      reason.textContent = why;
      error.textContent = '';
      accessKey.focus();
    },
    /** Hides the form and shows the session chrome (the role pill only when it is known). */
    hide(/** @type {import('./types.js').Session|null} */ s) {
      view.hidden = true;
      role.hidden = !s;
      role.textContent = !s ? '' : s.role === 'full' ? 'full access' : s.role === 'read_only' ? 'read only' : s.role;
      signOut.hidden = false;
    },
  };
}
