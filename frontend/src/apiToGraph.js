// An API prompt (no layout, no frontend nodes) → editor graph: one node per entry with the same
// id, widget values set by name, links connected, and a simple left-to-right layout by depth.
// Used when a file or PNG carries only the API form.
import { LiteGraph } from '@comfyorg/litegraph';

const isLink = (v) => Array.isArray(v) && v.length === 2 && (typeof v[0] === 'string' || typeof v[0] === 'number') && Number.isInteger(v[1]);

function slotFor(node, name) {
  return (node.inputs || []).findIndex((i) => (i.widget?.name ?? i.name) === name);
}

/** Depth of every id: 0 for nodes without links in, else one more than their deepest source. */
function depths(prompt) {
  const depth = new Map();
  const visiting = new Set();
  const walk = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id) || !prompt[id]) return 0;
    visiting.add(id);
    let d = 0;
    for (const v of Object.values(prompt[id].inputs || {})) if (isLink(v) && prompt[String(v[0])]) d = Math.max(d, walk(String(v[0])) + 1);
    visiting.delete(id);
    depth.set(id, d);
    return d;
  };
  for (const id of Object.keys(prompt)) walk(id);
  return depth;
}

/** Fills `graph` (cleared first) from `prompt`. Returns {missing: [class_type...]}. */
export function apiToGraph(graph, prompt) {
  graph.clear();
  const byId = new Map();
  const missing = [];
  const depth = depths(prompt);
  const columnY = new Map();
  const nodes = [];
  const ids = Object.keys(prompt).sort((a, b) => (depth.get(a) - depth.get(b)) || (Number(a) - Number(b)));
  for (const id of ids) {
    const n = prompt[id];
    const node = LiteGraph.createNode(n.class_type);
    if (!node) {
      missing.push(n.class_type);
      continue;
    }
    if (/^[1-9][0-9]*$/.test(id) && !graph.getNodeById(Number(id))) node.id = Number(id);
    if (n._meta?.title) node.title = n._meta.title;
    for (const [name, v] of Object.entries(n.inputs || {})) {
      if (isLink(v)) continue;
      const w = node.widgets?.find((x) => x.name === name);
      if (w) w.value = v && typeof v === 'object' && '__value__' in v ? v.__value__ : v;
    }
    const d = depth.get(id) || 0;
    const y = columnY.get(d) || 0;
    node.pos = [0, y];
    columnY.set(d, y + node.size[1] + 60);
    nodes.push([d, node]);
    graph.add(node);
    byId.set(id, node);
  }
  // Columns by depth, each as wide as its widest node plus a gap.
  const widths = [];
  for (const [d, n] of nodes) widths[d] = Math.max(widths[d] || 0, n.size[0]);
  const xs = [];
  for (let d = 0, x = 0; d < widths.length; d++) { xs[d] = x; x += (widths[d] || 0) + 60; }
  for (const [d, n] of nodes) n.pos[0] = xs[d];
  for (const [id, n] of Object.entries(prompt)) {
    const node = byId.get(id);
    if (!node) continue;
    for (const [name, v] of Object.entries(n.inputs || {})) {
      if (!isLink(v)) continue;
      const origin = byId.get(String(v[0]));
      const slot = slotFor(node, name);
      if (origin && slot >= 0 && origin.outputs?.[v[1]]) origin.connect(v[1], node, slot);
    }
  }
  return { missing };
}
