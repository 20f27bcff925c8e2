// Errors on the graph: POST /prompt validation failures (node_errors) outline the offending
// nodes in red and mark the inputs/widgets named by extra_info.input_name; execution errors
// mark the failing node. A floating panel lists every message with a button that centres the
// node.
import { h, clear } from './dom.js';

export class ErrorsPanel {
  constructor(editor) {
    this.editor = editor;
    this.el = h('div#errors-panel.floating', { hidden: true, role: 'alert' });
    document.getElementById('canvas-wrap')?.append(this.el);
    this.marked = new Set();
  }

  nodeById(id) {
    const g = this.editor.graph;
    return g.getNodeById(Number(id)) ?? g.getNodeById(id);
  }

  mark(node, errors) {
    if (!node) return;
    node.has_errors = true;
    node.weftErrors = [...(node.weftErrors || []), ...errors];
    this.marked.add(node);
  }

  clear() {
    for (const n of this.marked) {
      n.has_errors = false;
      n.weftErrors = null;
    }
    this.marked.clear();
    this.el.hidden = true;
    clear(this.el);
    this.editor.canvas?.setDirty(true, true);
  }

  clearExecution() {
    if (this.kind === 'execution') this.clear();
  }

  goTo(node) {
    if (!node || !this.editor.canvas) return;
    this.editor.canvas.centerOnNode(node);
    this.editor.canvas.selectNode(node);
    this.editor.canvas.setDirty(true, true);
  }

  render(title, items) {
    clear(this.el,
      h('div.errors-head', h('strong', title), h('button.icon', { title: 'Close', 'aria-label': 'Close errors', onclick: () => this.clear() }, '×')),
      h('ul', items.map((it) => h('li.error-item',
        it.node ? h('button.link', { onclick: () => this.goTo(it.node) }, `#${it.node.id} ${it.node.title}`) : null,
        it.input ? h('span.error-input', ` ${it.input}:`) : null,
        h('span.error-msg', ` ${it.message}`),
        it.details ? h('div.error-details', it.details) : null,
        it.traceback ? h('pre.error-trace', it.traceback) : null))));
    this.el.hidden = false;
    this.editor.canvas?.setDirty(true, true);
  }

  /** The 400 body of POST /prompt: {error, node_errors}. */
  showValidation(body) {
    this.clear();
    this.kind = 'validation';
    const items = [];
    for (const [id, ne] of Object.entries(body.node_errors || {})) {
      const node = this.nodeById(id);
      const errs = ne.errors || [];
      this.mark(node, errs);
      for (const e of errs) {
        const input = e.extra_info?.input_name;
        items.push({ node, input, message: e.message || e.type, details: e.details !== input ? e.details : '' });
      }
    }
    const top = body.error;
    if (!items.length && top) items.push({ message: top.message || String(top), details: top.details });
    this.render(top?.message || 'Prompt outputs failed validation', items);
    const first = items.find((i) => i.node)?.node;
    if (first && !this.editor.canvas?.isNodeVisible(first)) this.goTo(first);
  }

  /** The data of an execution_error message. */
  showExecution(node, d) {
    this.clear();
    this.kind = 'execution';
    if (node) this.mark(node, [{ message: d.exception_message, extra_info: {} }]);
    const tb = Array.isArray(d.traceback) ? d.traceback.join('') : d.traceback;
    this.render(`${d.node_type || 'A node'} failed`, [{
      node, message: `${d.exception_type ? `${d.exception_type}: ` : ''}${d.exception_message || 'error'}`, traceback: tb || '',
    }]);
  }
}
