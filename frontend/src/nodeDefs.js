// /object_info → litegraph node classes, one per node class the server offers. Inputs that only
// take links become sockets first; then each widget input gets its widget(s) and a widget input
// socket ({widget: {name}}), the layout ComfyUI's editor saves. No DOM: runs in Node tests.
import { LGraphNode, LiteGraph } from '@comfyorg/litegraph';
import { addInputWidgets, isWidgetInput, normaliseSpec } from './widgets.js';

/** [{name, norm, optional}] in the server's input_order (required, then optional). */
export function inputEntries(def) {
  const out = [];
  for (const group of ['required', 'optional']) {
    const specs = def.input?.[group] || {};
    const listed = def.input_order?.[group] || [];
    const names = [...listed.filter((n) => n in specs), ...Object.keys(specs).filter((n) => !listed.includes(n))];
    for (const name of names) out.push({ name, norm: normaliseSpec(specs[name]), optional: group === 'optional' });
  }
  return out;
}

/** Adds sockets, widgets and outputs of `def` to a fresh node. */
export function buildNode(node, def, env = {}) {
  const entries = inputEntries(def);
  for (const e of entries) {
    if (isWidgetInput(e.norm)) continue;
    const slot = node.addInput(e.name, e.norm.type);
    if (e.optional) slot.optional = true;
    if (e.norm.options.tooltip) slot.tooltip = e.norm.options.tooltip;
  }
  for (const e of entries) {
    if (!isWidgetInput(e.norm)) continue;
    for (const { widget, socketType } of addInputWidgets(node, e.name, e.norm, env)) {
      const slot = node.addInput(widget.name, socketType, { widget: { name: widget.name } });
      if (e.optional) slot.optional = true;
    }
  }
  const outs = def.output || [];
  outs.forEach((t, i) => {
    const type = Array.isArray(t) ? 'COMBO' : String(t);
    const slot = node.addOutput(def.output_name?.[i] ?? type, type);
    if (def.output_is_list?.[i]) slot.shape = LiteGraph.GRID_SHAPE;
    if (def.output_tooltips?.[i]) slot.tooltip = def.output_tooltips[i];
  });
}

/** A node class for one /object_info entry. */
export function makeNodeClass(def, env = {}) {
  const title = def.display_name || def.name;
  class ComfyNode extends LGraphNode {
    constructor(t) {
      super(t ?? title);
      this.comfyClass = def.name;
      this.serialize_widgets = true;
      this.isOutputNode = !!def.output_node;
      this.widgets = [];
      buildNode(this, def, env);
      const s = this.computeSize();
      const multiline = (this.widgets || []).some((w) => w.type === 'customtext');
      this.size = [Math.max(s[0], multiline ? 400 : 220), Math.max(s[1], multiline ? 180 : 0)];
      env.onCreated?.(this, def);
    }

    onConfigure(info) {
      // litegraph merges saved inputs over ours by index; a workflow saved before an input
      // existed (or in another order) would leave a second socket of the same name behind.
      const n = info.inputs?.length ?? 0;
      const key = (i) => i.widget?.name ?? i.name;
      const seen = new Set(this.inputs.slice(0, n).map(key));
      this.inputs = this.inputs.filter((inp, i) => i < n || inp.link != null || !seen.has(key(inp)));
      env.onConfigured?.(this, info);
    }
  }
  ComfyNode.title = title;
  ComfyNode.comfyClass = def.name;
  ComfyNode.nodeData = def;
  ComfyNode.description = def.description || '';
  return ComfyNode;
}

/**
 * Registers every node class of `objectInfo` with litegraph (replacing earlier registrations of
 * the same names, so a refresh picks up new model lists). Returns the class names registered.
 */
export function registerNodeDefs(objectInfo, env = {}) {
  const names = [];
  for (const [name, def] of Object.entries(objectInfo || {})) {
    if (!def || typeof def !== 'object') continue;
    const C = makeNodeClass({ ...def, name: def.name || name }, env);
    LiteGraph.registerNodeType(name, C);
    // registerNodeType derives the category from the type's path; ours comes from the server.
    C.category = def.category || '';
    names.push(name);
  }
  return names;
}

/** The /object_info definition behind a node, or undefined for frontend-only nodes. */
export function nodeDefOf(node) {
  return node?.constructor?.nodeData;
}
