// The editor's own node types, which never reach the server: Reroute (passes one link through
// and takes its type), PrimitiveNode (one value feeding widget inputs of other nodes) and
// Note/MarkdownNote (text). Their names and saved shapes are ComfyUI's, so its workflows load.
import { LGraphNode, LiteGraph } from '@comfyorg/litegraph';
import { addControlWidget, addMultilineWidget } from './widgets.js';

/** The link feeding input `slot` of `node`, or null. */
export function inputLink(node, slot) {
  const id = node.inputs?.[slot]?.link;
  return id == null || !node.graph ? null : node.graph.getLink(id) ?? null;
}

/** [{node, input, slot}] fed by output `slot` of `node`. */
export function outputTargets(node, slot = 0) {
  const out = [];
  for (const id of node.outputs?.[slot]?.links || []) {
    const l = node.graph?.getLink(id);
    const t = l && node.graph.getNodeById(l.target_id);
    if (t) out.push({ node: t, input: t.inputs[l.target_slot], slot: l.target_slot });
  }
  return out;
}

// ------------------------------------------------------------------ Reroute

export class RerouteNode extends LGraphNode {
  constructor(title) {
    super(title ?? 'Reroute');
    this.addInput('', '*');
    this.addOutput('', '*');
    this.properties = { showOutputText: false, horizontal: false };
    this.isVirtualNode = true;
    this.collapsable = false;
    this.size = [75, 26];
  }

  computeSize() {
    return [75, 26];
  }

  onConnectionsChange() {
    if (!this.graph || this.graph.weftConfiguring) return;
    this.updateType();
  }

  onAfterGraphConfigured() {
    this.updateType();
  }

  /** The type flowing through: upstream through other reroutes, else what the targets take. */
  upstreamType() {
    const seen = new Set();
    let node = this;
    while (node && !seen.has(node)) {
      seen.add(node);
      const l = inputLink(node, 0);
      if (!l) break;
      const origin = node.graph.getNodeById(l.origin_id);
      if (!(origin instanceof RerouteNode)) return origin?.outputs?.[l.origin_slot]?.type ?? null;
      node = origin;
    }
    return null;
  }

  updateType(seen = new Set()) {
    if (seen.has(this)) return;
    seen.add(this);
    let type = this.upstreamType();
    if (!type || type === '*') {
      type = null;
      for (const t of outputTargets(this)) {
        const tt = t.node instanceof RerouteNode ? null : t.input?.type;
        if (tt && tt !== '*') { type = tt; break; }
      }
    }
    const out = this.outputs[0];
    out.type = type || '*';
    const color = LiteGraph.LGraphCanvas?.link_type_colors?.[out.type];
    for (const id of out.links || []) {
      const l = this.graph.getLink(id);
      if (l) { l.type = out.type; if (color) l.color = color; }
    }
    for (const t of outputTargets(this)) if (t.node instanceof RerouteNode) t.node.updateType(seen);
  }
}

// ------------------------------------------------------------------ PrimitiveNode

const PRIMITIVE_OUT = 'connect to widget input';
// Browser hooks (multiline text boxes), set by registerFrontendNodes.
let env = {};

export class PrimitiveNode extends LGraphNode {
  constructor(title) {
    super(title ?? 'Primitive');
    this.addOutput(PRIMITIVE_OUT, '*');
    this.properties = { 'Run widget replace on values': false };
    this.serialize_widgets = true;
    this.isVirtualNode = true;
  }

  onConfigure(info) {
    this.savedValues = Array.isArray(info.widgets_values) ? info.widgets_values.slice() : null;
  }

  onAfterGraphConfigured() {
    if (this.outputs[0].links?.length && !this.widgets?.length) this.adoptTarget(true);
  }

  onConnectionsChange(type, slot, connected) {
    if (!this.graph || this.graph.weftConfiguring || type !== LiteGraph.OUTPUT) return;
    if (connected && !this.widgets?.length) this.adoptTarget(false);
    else if (!connected && !this.outputs[0].links?.length) this.reset();
  }

  /** The first target input that has a widget, with that widget. */
  targetWidget() {
    for (const t of outputTargets(this)) {
      const name = t.input?.widget?.name;
      const w = name && t.node.widgets?.find((x) => x.name === name);
      if (w) return { ...t, widget: w };
    }
    return null;
  }

  /** Becomes a copy of the target's widget (value, limits, control companion). */
  adoptTarget(restoring) {
    const t = this.targetWidget();
    if (!t) {
      // Only widget inputs can take a primitive; undo the link that was just made.
      if (!restoring) for (const id of [...(this.outputs[0].links || [])]) this.graph.removeLink(id);
      return;
    }
    const out = this.outputs[0];
    out.type = t.input.type;
    out.name = t.input.type;
    out.widget = { name: t.widget.name };
    const src = t.widget;
    const opts = { ...src.options };
    delete opts.serialize;
    const w = src.type === 'customtext' ? addMultilineWidget(this, 'value', src.value, env)
      : this.addWidget(src.type, 'value', src.value, () => {}, opts);
    w.callback = () => this.applyToGraph();
    const value = this.widgets[0];
    if (w.type === 'number' || w.type === 'combo') {
      addControlWidget(this, value, 'fixed');
      if (w.type === 'combo') this.addWidget('text', 'control_filter_list', '', () => {}, { serialize: false });
    }
    if (restoring && this.savedValues) {
      this.savedValues.forEach((v, i) => { if (this.widgets[i]) this.widgets[i].value = v; });
    }
    this.applyToGraph();
    const s = this.computeSize();
    this.size = [Math.max(this.size[0], s[0]), Math.max(this.size[1], s[1])];
  }

  /** Pushes the value into every widget this node feeds. */
  applyToGraph() {
    const v = this.widgets?.[0]?.value;
    if (v === undefined) return;
    for (const t of outputTargets(this)) {
      const w = t.node.widgets?.find((x) => x.name === t.input?.widget?.name);
      if (w) w.value = v;
    }
  }

  onWidgetValueSet() {
    this.applyToGraph();
  }

  reset() {
    this.widgets = [];
    const out = this.outputs[0];
    out.type = '*';
    out.name = PRIMITIVE_OUT;
    delete out.widget;
  }
}

// ------------------------------------------------------------------ Note

export class NoteNode extends LGraphNode {
  constructor(title) {
    super(title ?? 'Note');
    this.color = '#432';
    this.bgcolor = '#653';
    this.properties = { text: '' };
    this.serialize_widgets = true;
    this.isVirtualNode = true;
    addMultilineWidget(this, 'text', '', env);
    this.size = [400, 200];
  }
}

/** Registers the frontend-only types; env.multiline draws text boxes in the browser. */
export function registerFrontendNodes(hooks = {}) {
  env = hooks;
  const table = [
    ['Reroute', RerouteNode, 'Reroute'],
    ['PrimitiveNode', PrimitiveNode, 'Primitive'],
    ['Note', NoteNode, 'Note'],
    ['MarkdownNote', class MarkdownNote extends NoteNode {}, 'Markdown Note'],
  ];
  RerouteNode.title_mode = LiteGraph.NO_TITLE;
  for (const [type, C, title] of table) {
    C.title = title;
    LiteGraph.registerNodeType(type, C);
    C.category = 'utils';
  }
}
