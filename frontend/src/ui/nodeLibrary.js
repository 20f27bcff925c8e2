// The node library beside the canvas: a search box and the node types grouped by category
// (from /object_info). Click a type to add it in the middle of the view, or drag it onto the
// canvas.
import { LiteGraph } from '@comfyorg/litegraph';
import { entriesFromTypes, searchNodes } from '../search.js';
import { h, clear } from './dom.js';

export const NODE_MIME = 'application/x-weft-node-type';

export class NodeLibrary {
  constructor(editor) {
    this.editor = editor;
    this.search = h('input#node-search', { type: 'search', placeholder: 'Search nodes…', 'aria-label': 'Search nodes', oninput: () => this.render() });
    this.list = h('div#node-list');
    this.el = h('aside#node-library', h('h3', 'Nodes'), this.search, this.list);
    this.open = new Set();
    this.render();
  }

  item(e) {
    return h('div.node-item', {
      draggable: true,
      title: e.description || e.type,
      dataset: { type: e.type },
      onclick: () => this.editor.addNode(e.type),
      ondragstart: (ev) => { ev.dataTransfer.setData(NODE_MIME, e.type); ev.dataTransfer.effectAllowed = 'copy'; },
    }, e.title, e.title !== e.type ? h('span.node-type', e.type) : null);
  }

  render() {
    const entries = entriesFromTypes(LiteGraph.registered_node_types);
    const q = this.search.value.trim();
    if (q) {
      clear(this.list, searchNodes(entries, q, { limit: 100 }).map((e) => this.item(e)));
      return;
    }
    const cats = new Map();
    for (const e of entries) {
      const c = e.category || 'other';
      if (!cats.has(c)) cats.set(c, []);
      cats.get(c).push(e);
    }
    const names = [...cats.keys()].sort((a, b) => a.localeCompare(b));
    clear(this.list, names.map((c) => {
      const items = cats.get(c).sort((a, b) => a.title.localeCompare(b.title));
      const d = h('details.node-cat', { open: this.open.has(c), ontoggle: () => (d.open ? this.open.add(c) : this.open.delete(c)) },
        h('summary', `${c} (${items.length})`), items.map((e) => this.item(e)));
      return d;
    }));
  }
}
