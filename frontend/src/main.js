// Entry point: who is signed in decides the page. No session: the login page. Signed in: the
// editor, or the API key page for admins (#/keys). A share link (#/share/TOKEN) opens its
// workflow read-only once signed in.
import '@comfyorg/litegraph/style.css';
import './styles/app.css';
import { Api } from './api.js';
import { startEditor } from './editorShell.js';
import { renderLogin } from './ui/login.js';
import { renderKeysPage } from './ui/keysPage.js';
import { toast } from './ui/dom.js';

const MSG = 'weft.loginMessage';
const api = new Api();
const root = document.getElementById('root');

function shareToken() {
  const m = location.hash.match(/^#\/share\/([A-Za-z0-9_-]+)$/);
  return m ? m[1] : null;
}

let leaving = false;
function toLogin(message) {
  // The first reason wins (logging out also closes the socket, which reports a revocation).
  if (leaving) return;
  leaving = true;
  sessionStorage.setItem(MSG, message);
  location.reload();
}

let openingToken = null;
async function openShareLink(shell, token) {
  if (openingToken === token) return;
  openingToken = token;
  try {
    const wf = await api.openShareLink(token);
    shell.editor.load(wf, { name: 'Shared workflow', owner: 'a share link', readOnly: true, source: 'link' });
  } catch (e) {
    toast(e.status === 404 ? 'This share link does not exist, has expired or was revoked.' : `Cannot open the link: ${e.message}`, 'error');
  }
  history.replaceState(null, '', location.pathname);
  openingToken = null;
}

async function showApp(me) {
  const session = { user: me.user, role: me.role, scopes: new Set(me.scopes || []) };
  // The editor and the key page live side by side; only one is shown. The editor keeps
  // running (and its socket open) while the key page is up.
  const editorRoot = document.createElement('div');
  const pageRoot = document.createElement('div');
  editorRoot.className = 'view';
  pageRoot.className = 'view';
  root.replaceChildren(editorRoot, pageRoot);
  let shell = null;
  const logout = async () => {
    shell?.ws.close(); // the server closes it anyway; a deliberate close is not a revocation
    await api.logout().catch(() => {});
    toLogin('You are signed out.');
  };
  const route = async () => {
    const keys = location.hash === '#/keys' && session.scopes.has('admin:keys');
    editorRoot.hidden = keys;
    pageRoot.hidden = !keys;
    if (keys) {
      await renderKeysPage(pageRoot, api, session, { onBack: () => { location.hash = ''; } });
      return;
    }
    pageRoot.replaceChildren();
    if (!shell) shell = await startEditor(editorRoot, api, session, { onLogout: logout, onKeys: () => { location.hash = '#/keys'; } });
    const token = shareToken();
    if (token) await openShareLink(shell, token);
  };
  window.addEventListener('hashchange', route);
  await route();
}

async function boot() {
  api.addEventListener('unauthorized', () => toLogin('Your session ended; sign in again.'));
  let me = null;
  try {
    me = await api.me();
  } catch (e) {
    if (e.status !== 401) {
      root.textContent = `Cannot reach the weft server: ${e.message}`;
      return;
    }
  }
  // The server hands a browser session its CSRF token again (a fresh tab, cleared storage).
  if (me && me.csrf_token) api.setCsrf(me.csrf_token);
  // A browser session without its CSRF token cannot change anything: sign in again.
  if (me && me.via === 'session' && !api.csrf) me = null;
  if (me) {
    await showApp(me);
    return;
  }
  const message = sessionStorage.getItem(MSG) || (shareToken() ? 'Sign in to open the shared workflow.' : '');
  sessionStorage.removeItem(MSG);
  renderLogin(root, api, { message, onLogin: (r) => showApp({ ...r, via: 'session' }) });
}

boot();
