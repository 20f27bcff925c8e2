// API key management for admins: every key (owner, label, scopes, created, last used,
// expiry, revoked), create one for any user (its secret is shown once, right after creation),
// revoke. Needs admin:keys; the editor does not offer the page to anyone else.
import { h, clear, confirmAction, fmtTime, toast } from './dom.js';

const ts = (s) => (s ? fmtTime(s * 1000) : '—');

export async function renderKeysPage(root, api, session, { onBack }) {
  const table = h('tbody#keys-rows');
  const created = h('div#key-created');
  const userSel = h('select#key-user', { 'aria-label': 'Owner' });
  const label = h('input#key-label', { type: 'text', placeholder: 'e.g. ci', 'aria-label': 'Label' });
  const expires = h('select#key-expires', { 'aria-label': 'Expires' },
    [['never', ''], ['1 day', 86400], ['30 days', 2592000], ['1 year', 31536000]].map(([l, v]) => h('option', { value: v }, l)));
  const scopeBoxes = [...session.scopes].sort().map((s) => h('label.check', h('input', { type: 'checkbox', value: s }), ` ${s}`));

  const load = async () => {
    try {
      const [keys, users] = await Promise.all([api.keys(true), session.scopes.has('admin:users') ? api.users() : Promise.resolve([{ name: session.user }])]);
      const cur = userSel.value || session.user;
      clear(userSel, users.map((u) => h('option', { value: u.name, selected: u.name === cur }, `${u.name}${u.role ? ` (${u.role})` : ''}`)));
      keys.sort((a, b) => (b.created ?? 0) - (a.created ?? 0));
      clear(table, keys.map((k) => h(`tr${k.revoked ? '.revoked' : ''}`, { dataset: { id: k.id } },
        h('td', h('code', k.id)), h('td', k.user), h('td', k.label || ''), h('td.scopes', (k.scopes || []).join(' ')),
        h('td', ts(k.created)), h('td', ts(k.last_used)), h('td', k.expires ? ts(k.expires) : 'never'),
        h('td', k.revoked ? 'revoked' : h('button.key-revoke.danger', {
          onclick: async () => {
            if (!(await confirmAction('Revoke key', `Revoke key ${k.id} of ${k.user}? Programs using it stop working at once.`, 'Revoke', true))) return;
            try {
              await api.revokeKey(k.id);
              toast(`Key ${k.id} revoked`, 'ok');
              load();
            } catch (e) {
              toast(`Cannot revoke: ${e.message}`, 'error');
            }
          },
        }, 'Revoke')))));
    } catch (e) {
      toast(`Cannot list keys: ${e.message}`, 'error');
    }
  };

  const create = async (ev) => {
    ev.preventDefault();
    const body = { label: label.value.trim() || 'key', user: userSel.value };
    const scopes = scopeBoxes.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value);
    if (scopes.length) body.scopes = scopes;
    if (expires.value) body.expires_in_s = Number(expires.value);
    try {
      const r = await api.createKey(body);
      const field = h('input#key-secret', { type: 'text', readOnly: true, value: r.key, 'aria-label': 'New key' });
      clear(created, h('div.notice',
        h('strong', `Key ${r.id} for ${body.user}. `), 'Copy it now: it is shown only once.',
        h('div.row', field, h('button', { type: 'button', onclick: () => { field.select(); navigator.clipboard?.writeText(r.key).catch(() => {}); } }, 'Copy'))));
      label.value = '';
      load();
    } catch (e) {
      toast(`Cannot create the key: ${e.message}`, 'error');
    }
  };

  clear(root, h('div.page',
    h('div.page-head', h('h1', 'API keys'), h('span.spacer'), h('button#btn-back', { onclick: onBack }, 'Back to the editor')),
    h('form#key-form', { onsubmit: create },
      h('h2', 'Create a key'),
      h('div.row', h('label', 'Owner', userSel), h('label', 'Label', label), h('label', 'Expires', expires)),
      h('details', h('summary', 'Scopes (none ticked: all of the owner\'s role)'), h('div.scopes-grid', scopeBoxes)),
      h('button#key-create.primary', { type: 'submit' }, 'Create key')),
    created,
    h('h2', 'Keys'),
    h('table#keys-table', h('thead', h('tr', ['Id', 'User', 'Label', 'Scopes', 'Created', 'Last used', 'Expires', ''].map((t) => h('th', t)))), table)));
  await load();
}
