// The workflow library kept on the server per user (user/<name>/workflows/*.json through
// /userdata): save, save as, open, rename, delete, share; and the workflows others shared with
// this user, which open read-only (a copy can be saved to edit them).
import { h, clear, ask, confirmAction, toast } from './dom.js';
import { ShareDialog } from './shareDialog.js';

const DIR = 'workflows/';

export function nameOf(path) {
  return path.replace(/^workflows\//, '').replace(/\.json$/i, '');
}

/** A library path for a name people typed; null when it cannot be one. */
export function pathFor(name) {
  const n = name.trim().replace(/\.json$/i, '');
  if (!n || n.split('/').some((p) => !p || p === '.' || p === '..') || /[\\\0]/.test(n)) return null;
  return `${DIR}${n}.json`;
}

export class LibraryPanel {
  constructor(editor) {
    this.editor = editor;
    this.mine = h('div#library-mine');
    this.shared = h('div#library-shared');
    this.items = [];
    this.share = new ShareDialog(editor);
    this.el = h('section#library.panel',
      h('div.panel-head', h('h3', 'My workflows'), h('button#btn-refresh-library', { onclick: () => this.refresh(), title: 'Reload the list' }, 'Refresh')),
      this.mine,
      h('div.panel-head', h('h3', 'Shared with me')),
      this.shared);
  }

  async refresh() {
    const api = this.editor.api;
    try {
      const [mine, shared] = await Promise.all([api.listWorkflows(), api.sharedWithMe().catch(() => [])]);
      this.items = mine.map((m) => (typeof m === 'string' ? { path: m } : m)).sort((a, b) => a.path.localeCompare(b.path));
      this.render(shared.filter((s) => s.path.startsWith(DIR)));
    } catch (e) {
      if (e.status !== 401) toast(`Cannot list workflows: ${e.message}`, 'error');
    }
  }

  render(shared) {
    const e = this.editor;
    const open = (p) => e.doc.path === p && e.doc.owner === e.session.user;
    clear(this.mine, this.items.length ? this.items.map((it) => {
      const path = DIR + it.path;
      return h(`div.wf-item${open(path) ? '.current' : ''}`, { dataset: { path } },
        h('button.link.wf-open', { onclick: () => this.open(path), title: `Open ${nameOf(path)}` }, nameOf(path)),
        h('span.spacer'),
        e.can('workflows:write') ? h('button.wf-rename', { onclick: () => this.rename(path) }, 'Rename') : null,
        e.can('workflows:share') ? h('button.wf-share', { onclick: () => this.share.open(path) }, 'Share') : null,
        e.can('workflows:write') ? h('button.wf-delete', { onclick: () => this.remove(path) }, 'Delete') : null);
    }) : h('div.muted', 'No saved workflows yet'));
    clear(this.shared, shared.length ? shared.map((s) => h('div.wf-item.shared', { dataset: { owner: s.owner, path: s.path } },
      h('button.link.wf-open-shared', { onclick: () => this.openShared(s.owner, s.path) }, nameOf(s.path)),
      h('span.muted', ` by ${s.owner}`))) : h('div.muted', 'Nothing shared with you'));
  }

  async open(path) {
    const e = this.editor;
    if (e.tracker.modified && !e.readOnly && !(await confirmAction('Open workflow', 'Discard the unsaved changes of the open workflow?', 'Discard', true))) return;
    try {
      const data = await e.api.getWorkflow(path);
      e.load(data, { name: nameOf(path), path, owner: e.session.user, source: 'library' });
      e.autosave();
      this.refresh();
    } catch (err) {
      toast(`Cannot open ${nameOf(path)}: ${err.message}`, 'error');
    }
  }

  async openShared(owner, path, data = null) {
    const e = this.editor;
    try {
      const wf = data ?? await e.api.getShared(owner, path);
      e.load(wf, { name: nameOf(path), path, owner, readOnly: true, source: 'shared' });
    } catch (err) {
      toast(`Cannot open ${nameOf(path)}: ${err.message}`, 'error');
    }
  }

  async write(path, overwrite) {
    const e = this.editor;
    await e.api.saveWorkflow(path, e.graph.serialize(), overwrite);
    e.doc = { ...e.doc, name: nameOf(path), path, owner: e.session.user, readOnly: false, source: 'library' };
    e.applyReadOnly();
    e.tracker.markSaved();
    e.autosave();
    e.emit('doc');
    toast(`Saved ${nameOf(path)}`, 'ok');
    this.refresh();
  }

  async save() {
    const e = this.editor;
    if (!e.can('workflows:write')) return;
    if (!e.doc.path || e.doc.readOnly || e.doc.owner !== e.session.user) return this.saveAs(e.doc.readOnly);
    try {
      await this.write(e.doc.path, true);
    } catch (err) {
      toast(`Save failed: ${err.message}`, 'error');
    }
  }

  async saveAs(copy = false) {
    const e = this.editor;
    if (!e.can('workflows:write')) return;
    const name = await ask(copy ? 'Save a copy' : 'Save workflow as', 'Name', copy ? `${e.doc.name} (copy)` : e.doc.name === 'Unsaved workflow' ? '' : e.doc.name, 'Save');
    if (name === null) return;
    const path = pathFor(name);
    if (!path) {
      toast('Give the workflow a name (folders with /, no "..").', 'error');
      return;
    }
    await this.refresh();
    const exists = this.items.some((it) => DIR + it.path === path);
    if (exists && !(await confirmAction('Replace workflow', `${nameOf(path)} exists. Replace it?`, 'Replace', true))) return;
    try {
      await this.write(path, true);
    } catch (err) {
      toast(`Save failed: ${err.message}`, 'error');
    }
  }

  async rename(path) {
    const e = this.editor;
    const name = await ask('Rename workflow', 'New name', nameOf(path), 'Rename');
    if (name === null) return;
    const to = pathFor(name);
    if (!to || to === path) return;
    try {
      await e.api.moveWorkflow(path, to);
      if (e.doc.path === path && e.doc.owner === e.session.user) {
        e.doc = { ...e.doc, path: to, name: nameOf(to) };
        e.autosave();
        e.emit('doc');
      }
      toast(`Renamed to ${nameOf(to)}`, 'ok');
      this.refresh();
    } catch (err) {
      toast(err.status === 409 ? `${nameOf(to)} exists already` : `Rename failed: ${err.message}`, 'error');
    }
  }

  async remove(path) {
    const e = this.editor;
    if (!(await confirmAction('Delete workflow', `Delete ${nameOf(path)} from your library?`, 'Delete', true))) return;
    try {
      await e.api.deleteWorkflow(path);
      if (e.doc.path === path && e.doc.owner === e.session.user) {
        e.doc = { ...e.doc, path: null };
        e.emit('doc');
      }
      toast(`Deleted ${nameOf(path)}`, 'ok');
      this.refresh();
    } catch (err) {
      toast(`Delete failed: ${err.message}`, 'error');
    }
  }
}
