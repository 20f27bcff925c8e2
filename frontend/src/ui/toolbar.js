// The top bar: document actions (new, open, save, export, undo/redo), the open workflow's
// name with its modified/read-only marks, queue controls with the overall progress bar and
// queue size, and the user menu. Buttons the user's role cannot use are not shown.
import { h, clear, confirmAction, download, toast } from './dom.js';

export class Toolbar {
  constructor(editor, { library, onLogout, onKeys }) {
    this.editor = editor;
    const e = editor;
    const can = (s) => e.can(s);
    this.fileInput = h('input', { type: 'file', accept: '.json,.png,application/json,image/png', hidden: true, onchange: () => this.openFile() });
    this.title = h('span#doc-title');
    this.badge = h('span#doc-badge');
    this.copyBtn = h('button#btn-copy', { onclick: () => library.saveAs(true), hidden: true, title: 'Save a copy in your library to edit it' }, 'Make a copy');
    this.batch = h('input#batch-count', { type: 'number', min: 1, max: 100, value: 1, title: 'Batch count', 'aria-label': 'Batch count' });
    this.queueInfo = h('span#queue-info', { title: 'Prompts waiting or running' }, 'Queue: 0');
    this.bar = h('div#progress-bar', h('div#progress-fill'));
    this.undoBtn = h('button#btn-undo', { onclick: () => e.undo(), title: 'Undo (Ctrl+Z)' }, 'Undo');
    this.redoBtn = h('button#btn-redo', { onclick: () => e.redo(), title: 'Redo (Ctrl+Y)' }, 'Redo');
    this.saveBtn = h('button#btn-save', { onclick: () => library.save(), title: 'Save to your library (Ctrl+S)', hidden: !can('workflows:write') }, 'Save');
    const exportMenu = h('select#export-menu', {
      'aria-label': 'Export',
      onchange: (ev) => {
        const v = ev.target.value;
        ev.target.value = '';
        const base = (e.doc.name || 'workflow').replace(/[\\/:*?"<>|]+/g, '_');
        if (v === 'ui') download(`${base}.json`, e.workflowJson());
        if (v === 'api') download(`${base}.api.json`, e.apiJson());
      },
    }, h('option', { value: '' }, 'Export…'), h('option', { value: 'ui' }, 'Workflow (editor JSON)'), h('option', { value: 'api' }, 'API prompt (JSON)'));

    this.el = h('header#topbar',
      h('span.brand', 'weft'),
      h('button#btn-new', { onclick: () => this.newDoc(), title: 'New workflow', hidden: false }, 'New'),
      h('button#btn-open', { onclick: () => this.fileInput.click(), title: 'Open a workflow JSON or PNG file' }, 'Open file'),
      this.fileInput,
      this.saveBtn,
      h('button#btn-save-as', { onclick: () => library.saveAs(), hidden: !can('workflows:write') }, 'Save as'),
      exportMenu,
      this.undoBtn, this.redoBtn,
      h('span.doc', this.title, this.badge, this.copyBtn),
      h('span.spacer'),
      can('prompt:submit') ? [
        this.batch,
        h('button#btn-queue.primary', { onclick: (ev) => this.queue(ev.shiftKey), title: 'Queue (Ctrl+Enter)' }, 'Queue'),
        h('button#btn-queue-front', { onclick: () => this.queue(true), title: 'Queue first (Ctrl+Shift+Enter)' }, 'Queue front'),
      ] : h('span.muted', 'view only'),
      can('queue:cancel') ? h('button#btn-interrupt', { onclick: () => e.interrupt(), title: 'Stop the running prompt' }, 'Interrupt') : null,
      this.bar,
      this.queueInfo,
      h('span.user', h('span#user-name', `${e.session.user} (${e.session.role})`),
        can('admin:keys') ? h('button#btn-keys', { onclick: onKeys }, 'API keys') : null,
        h('button#btn-logout', { onclick: onLogout }, 'Log out')));

    e.addEventListener('doc', () => this.update());
    e.execution.addEventListener('progress', (ev) => this.progress(ev.detail.overall));
    e.execution.addEventListener('queue', (ev) => { this.queueInfo.textContent = `Queue: ${ev.detail.remaining}`; });
    this.update();
  }

  async newDoc() {
    if (this.editor.tracker.modified && !this.editor.readOnly) {
      if (!(await confirmAction('New workflow', 'Discard the unsaved changes of the open workflow?', 'Discard', true))) return;
    }
    this.editor.newWorkflow(true);
  }

  async openFile() {
    const f = this.fileInput.files?.[0];
    this.fileInput.value = '';
    if (!f) return;
    try {
      await this.editor.loadFile(f);
    } catch (err) {
      toast(`Cannot open ${f.name}: ${err.message}`, 'error');
    }
  }

  async queue(front) {
    const count = Math.max(1, Math.min(100, Number(this.batch.value) || 1));
    await this.editor.queue({ front, count });
  }

  update() {
    const e = this.editor;
    const d = e.doc;
    this.title.textContent = `${d.name}${e.tracker.modified && !d.readOnly ? ' *' : ''}`;
    this.title.title = d.path ? `${d.owner}/${d.path}` : 'not saved in the library';
    const badge = d.readOnly ? `shared by ${d.owner} · read only` : '';
    clear(this.badge, badge);
    this.badge.hidden = !badge;
    this.copyBtn.hidden = !(d.readOnly && e.can('workflows:write'));
    this.saveBtn.disabled = !!d.readOnly;
    this.undoBtn.disabled = d.readOnly || !e.tracker.canUndo;
    this.redoBtn.disabled = d.readOnly || !e.tracker.canRedo;
    document.title = `${d.name}${e.tracker.modified ? '*' : ''} - weft`;
  }

  progress(overall) {
    const fill = this.bar.firstChild;
    if (overall == null) {
      this.bar.classList.remove('active');
      fill.style.width = '0%';
      document.title = document.title.replace(/^\[\d+%\] /, '');
      return;
    }
    const pct = Math.round(overall * 100);
    this.bar.classList.add('active');
    this.bar.dataset.value = String(pct);
    fill.style.width = `${pct}%`;
    document.title = `[${pct}%] ${document.title.replace(/^\[\d+%\] /, '')}`;
  }
}
