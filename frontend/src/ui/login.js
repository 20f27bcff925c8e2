// The login page: name and password, POST /auth/login (the server sets the session cookie and
// answers the CSRF token); failures show the server's message (wrong credentials, throttling).
import { h, clear } from './dom.js';

export function renderLogin(root, api, { message = '', onLogin }) {
  const user = h('input#login-user', { type: 'text', name: 'username', autocomplete: 'username', required: true, 'aria-label': 'User name' });
  const pass = h('input#login-password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, 'aria-label': 'Password' });
  const err = h('p#login-error.error', { role: 'alert', hidden: !message }, message);
  const btn = h('button#login-submit.primary', { type: 'submit' }, 'Sign in');
  const form = h('form#login-form', {
    onsubmit: async (e) => {
      e.preventDefault();
      btn.disabled = true;
      err.hidden = true;
      try {
        const r = await api.login(user.value.trim(), pass.value);
        pass.value = '';
        onLogin(r);
      } catch (ex) {
        err.textContent = ex.status === 401 ? 'Wrong user name or password.' : ex.status === 429 ? 'Too many attempts; wait a moment and try again.' : ex.message;
        err.hidden = false;
      } finally {
        btn.disabled = false;
      }
    },
  },
  h('h1', 'weft'),
  h('p.muted', 'Sign in to the graph editor'),
  h('label', 'User name', user),
  h('label', 'Password', pass),
  err,
  btn);
  clear(root, h('div.login-box', form));
  user.focus();
}
