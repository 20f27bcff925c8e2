// Graph → API prompt ({"<id>": {inputs, class_type, _meta: {title}}}), the body POST /prompt
// takes. Frontend-only nodes vanish: a Reroute passes its link through, a Primitive's value is
// written into the inputs it feeds, a bypassed node passes the input of the matching type
// through, and a muted node is dropped along with the links that pointed at it. Pure: no DOM.

export const MODE_NEVER = 2;
export const MODE_BYPASS = 4;

function isVirtual(node) {
  return !!node?.isVirtualNode;
}

function linkOf(graph, node, slot) {
  const id = node.inputs?.[slot]?.link;
  return id == null ? null : graph.getLink(id) ?? null;
}

/** The input slot a bypassed node passes through for its output `oslot`: the same index first
 * when the types agree, else the first input of the same type. -1 when none does. */
export function bypassInputFor(node, oslot) {
  const type = node.outputs?.[oslot]?.type;
  const ins = node.inputs || [];
  if (ins[oslot] && ins[oslot].type === type) return oslot;
  return ins.findIndex((i) => i.type === type);
}

/**
 * Follows the link into input `slot` of `node` to the node that really produces the value.
 * Returns {link: [id, slot]}, {value} (a Primitive's) or null (nothing connected, or a dead
 * end such as an unconnected Reroute or a bypassed node without a matching input).
 */
export function resolveInput(graph, node, slot) {
  let link = linkOf(graph, node, slot);
  const seen = new Set();
  while (link) {
    if (seen.has(link.id)) return null; // a reroute or bypass loop
    seen.add(link.id);
    const origin = graph.getNodeById(link.origin_id);
    if (!origin) return null;
    const oslot = link.origin_slot;
    if (origin.type === 'PrimitiveNode') {
      const w = origin.widgets?.[0];
      return w === undefined ? null : { value: w.value };
    }
    if (isVirtual(origin)) {
      // Reroute-like pass-through nodes have exactly one input.
      link = linkOf(graph, origin, 0);
      continue;
    }
    if (origin.mode === MODE_BYPASS) {
      const i = bypassInputFor(origin, oslot);
      if (i < 0) return null;
      link = linkOf(graph, origin, i);
      continue;
    }
    return { link: [String(origin.id), oslot] };
  }
  return null;
}

/** Arrays are links in the API format; a list value has to be wrapped to stay a value. */
function wrapValue(v) {
  return Array.isArray(v) ? { __value__: v } : v;
}

function executionOrder(graph) {
  const nodes = graph.computeExecutionOrder?.(false) || graph._nodes || [];
  return nodes.length === (graph._nodes || []).length ? nodes : graph._nodes;
}

/** Keeps only `targets` (output node ids) and everything they depend on. */
export function pruneToTargets(output, targets) {
  const keep = new Set();
  const stack = targets.map(String).filter((id) => output[id]);
  while (stack.length) {
    const id = stack.pop();
    if (keep.has(id)) continue;
    keep.add(id);
    for (const v of Object.values(output[id].inputs)) if (Array.isArray(v) && output[v[0]]) stack.push(v[0]);
  }
  const pruned = {};
  for (const [id, n] of Object.entries(output)) if (keep.has(id)) pruned[id] = n;
  return pruned;
}

/**
 * The API prompt for `graph`. options.targets: output node ids to run (partial execution).
 * Returns {output, missing}: missing lists nodes whose type the server does not know
 * ([{id, type}]); they are left out.
 */
export function graphToPrompt(graph, options = {}) {
  const output = {};
  const missing = [];
  for (const node of executionOrder(graph)) {
    if (isVirtual(node) || node.mode === MODE_NEVER || node.mode === MODE_BYPASS) continue;
    const classType = node.comfyClass ?? node.constructor?.comfyClass;
    if (!classType) {
      missing.push({ id: node.id, type: node.type || node.last_serialization?.type });
      continue;
    }
    const inputs = {};
    for (const [i, w] of (node.widgets || []).entries()) {
      if (w.options?.serialize === false || w.serialize === false || !w.name) continue;
      const v = typeof w.serializeValue === 'function' ? w.serializeValue(node, i) : w.value;
      if (v !== undefined) inputs[w.name] = wrapValue(v);
    }
    for (const [slot, input] of (node.inputs || []).entries()) {
      const r = resolveInput(graph, node, slot);
      if (!r) continue;
      const name = input.widget?.name ?? input.name;
      if (r.link) inputs[name] = r.link;
      else if (input.widget) inputs[name] = wrapValue(r.value);
    }
    output[String(node.id)] = { inputs, class_type: classType, _meta: { title: node.title ?? classType } };
  }
  // Links into nodes that are not part of the prompt (muted, unknown) are dropped.
  for (const n of Object.values(output)) {
    for (const [k, v] of Object.entries(n.inputs)) if (Array.isArray(v) && v.length === 2 && !output[v[0]]) delete n.inputs[k];
  }
  const targets = options.targets?.length ? options.targets : null;
  return { output: targets ? pruneToTargets(output, targets) : output, missing };
}
