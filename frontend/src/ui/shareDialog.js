// Sharing one workflow of the library: with named users, with roles, or with everyone signed
// in (grantees can open it, never change it), and share links that open it without an account
// until they expire or are revoked. The server has no "who is this shared with" read, so the
// last grants set from this browser are remembered to prefill the form.
import { h, clear, modal, toast } from './dom.js';

const ROLES = ['viewer', 'user', 'editor', 'admin'];
const CACHE = 'weft.shares.';

function remembered(user, path) {
  try { return JSON.parse(localStorage.getItem(CACHE + user) || '{}')[path] || null; } catch { return null; }
}

function remember(user, path, grants) {
  try {
    const all = JSON.parse(localStorage.getItem(CACHE + user) || '{}');
    all[path] = grants;
    localStorage.setItem(CACHE + user, JSON.stringify(all));
  } catch { /* storage unavailable */ }
}

/** The page URL that opens a share link in the editor. */
export function editorLinkFor(token) {
  return `${location.origin}/#/share/${token}`;
}

export class ShareDialog {
  constructor(editor) {
    this.editor = editor;
  }

  async open(path) {
    const e = this.editor;
    const me = e.session.user;
    const prev = remembered(me, path) || { users: [], roles: [], public: false };
    const users = h('input#share-users', { type: 'text', value: prev.users.join(', '), placeholder: 'alice, bob', 'aria-label': 'Users' });
    const roleBoxes = ROLES.map((r) => h('label.check', h('input', { type: 'checkbox', value: r, checked: prev.roles.includes(r), dataset: { role: r } }), ` ${r}`));
    const pub = h('input#share-public', { type: 'checkbox', checked: !!prev.public });
    const status = h('p.muted#share-status', prev.users.length || prev.roles.length || prev.public ? 'Shared as shown (as last set from this browser).' : '');
    const links = h('div#share-links');
    const created = h('div#share-created');
    const expiry = h('select#share-expiry', { 'aria-label': 'Link expiry' },
      [['1 day', 86400], ['7 days', 604800], ['30 days', 2592000], ['1 year', 31536000]].map(([l, s]) => h('option', { value: s, selected: s === 604800 }, l)));

    const renderLinks = async () => {
      try {
        const now = Date.now() / 1000;
        const list = (await e.api.shareLinks()).filter((l) => l.path === path && !l.revoked && (!l.expires || l.expires > now));
        clear(links, list.length ? list.map((l) => h('div.link-item', { dataset: { id: l.id } },
          h('span', `link ${l.id}, expires ${l.expires ? new Date(l.expires * 1000).toLocaleString() : 'never'}`),
          h('button.link-revoke', {
            onclick: async () => {
              await e.api.revokeShareLink(l.id).catch((err) => toast(err.message, 'error'));
              renderLinks();
            },
          }, 'Revoke'))) : h('div.muted', 'No active links'));
      } catch (err) {
        clear(links, h('div.muted', `Cannot list links: ${err.message}`));
      }
    };

    const createLink = async () => {
      try {
        const r = await e.api.createShareLink(path, Number(expiry.value));
        const url = editorLinkFor(r.token);
        const field = h('input#share-link-url', { type: 'text', readOnly: true, value: url, 'aria-label': 'Share link' });
        clear(created, h('p', 'Copy the link now; it is shown only once.'), field,
          h('button', { onclick: () => { field.select(); navigator.clipboard?.writeText(url).catch(() => {}); } }, 'Copy'),
          h('p.muted', 'Raw JSON: ', h('a', { href: r.url, target: '_blank', rel: 'noopener' }, r.url)));
        renderLinks();
      } catch (err) {
        toast(`Cannot create a link: ${err.message}`, 'error');
      }
    };

    const apply = async () => {
      const grants = {
        users: users.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean),
        roles: roleBoxes.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value),
        public: pub.checked,
      };
      try {
        const r = await e.api.share(path, { users: grants.users, roles: grants.roles, isPublic: grants.public });
        remember(me, path, { users: r.users || grants.users, roles: r.roles || grants.roles, public: !!r.public });
        toast(grants.users.length || grants.roles.length || grants.public ? 'Sharing saved' : 'No longer shared', 'ok');
        return true;
      } catch (err) {
        status.textContent = err.message;
        status.classList.add('error');
        return false;
      }
    };

    renderLinks();
    await modal(`Share ${path.replace(/^workflows\//, '').replace(/\.json$/, '')}`, [
      h('label', 'With users (names, comma separated)', users),
      h('div.roles', h('span', 'With roles: '), roleBoxes),
      h('label.check', pub, ' With everyone who can sign in'),
      status,
      h('h4', 'Share links'),
      h('p.muted', 'Anyone with a link can open this workflow until it expires.'),
      h('div.row', expiry, h('button#btn-create-link', { onclick: createLink }, 'Create link')),
      created,
      links,
    ], [
      { label: 'Close', value: null },
      { label: 'Save sharing', value: 'save', primary: true, check: apply },
    ]);
  }
}
