// Builds the editor page for a signed-in user: top bar, node library, canvas, and the side
// panels (queue and history, gallery, workflow library), then loads node types, the last graph
// and the live connection.
import { Editor } from './app.js';
import { WsClient } from './ws.js';
import { Toolbar } from './ui/toolbar.js';
import { NodeLibrary } from './ui/nodeLibrary.js';
import { QueuePanel } from './ui/queuePanel.js';
import { Gallery } from './ui/gallery.js';
import { LibraryPanel } from './ui/libraryPanel.js';
import { installShortcuts } from './ui/shortcuts.js';
import { installMenus } from './ui/menus.js';
import { installDropzone } from './ui/dropzone.js';
import { h, clear, toast } from './ui/dom.js';

function tabs(panels) {
  const bar = h('div#side-tabs', { role: 'tablist' });
  const body = h('div#side-body');
  const show = (name) => {
    for (const p of panels) {
      p.el.hidden = p.name !== name;
      p.btn.classList.toggle('active', p.name === name);
      p.btn.setAttribute('aria-selected', String(p.name === name));
      if (p.name === name) p.onShow?.();
    }
  };
  for (const p of panels) {
    p.btn = h('button.tab', { role: 'tab', dataset: { tab: p.name }, onclick: () => show(p.name) }, p.label);
    bar.append(p.btn);
    body.append(p.el);
  }
  show(panels[0].name);
  return { el: h('aside#side', bar, body), show };
}

export async function startEditor(root, api, session, { onLogout, onKeys }) {
  const ws = new WsClient();
  const editor = new Editor({ api, ws, session });
  globalThis.weft = editor; // for people poking at the page, and for the browser tests

  const canvasEl = h('canvas#graph-canvas', { tabindex: 0 });
  const layer = h('div#dom-layer');
  const wrap = h('div#canvas-wrap', canvasEl, layer);
  const library = new LibraryPanel(editor);
  const toolbar = new Toolbar(editor, { library, onLogout, onKeys });
  const nodes = new NodeLibrary(editor);
  const queue = new QueuePanel(editor);
  const gallery = new Gallery(editor);
  const side = tabs([
    { name: 'queue', label: 'Queue', el: queue.el, onShow: () => queue.refresh() },
    { name: 'gallery', label: 'Gallery', el: gallery.el },
    { name: 'library', label: 'Workflows', el: library.el, onShow: () => library.refresh() },
  ]);
  clear(root, h('div#app', toolbar.el, h('main#main', nodes.el, wrap, side.el)));

  editor.mount(wrap, canvasEl, layer);
  let info;
  try {
    info = await api.objectInfo();
  } catch (e) {
    toast(`Cannot load the node types: ${e.message}`, 'error');
    info = {};
  }
  editor.registerNodes(info);
  nodes.render();
  installMenus(editor, editor.canvas);
  installDropzone(editor, wrap);
  installShortcuts(editor, { save: () => library.save(), openFile: () => toolbar.fileInput.click() });
  editor.restoreAutosave();
  editor.execution.bind(ws);
  ws.addEventListener('revoked', () => api.dispatchEvent(new CustomEvent('unauthorized')));
  ws.connect();
  queue.refresh();
  gallery.loadHistory();
  library.refresh();
  return { editor, ws, library, side };
}
