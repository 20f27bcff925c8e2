// Loads an editor graph (a saved workflow) into an LGraph the way ComfyUI's editor does: every
// node is configured first, then frontend nodes that depend on their neighbours (Primitive
// widgets copy the widget they feed, Reroutes take their type) finish in a second pass.
// Returns the node types the server does not offer (kept as red placeholders).
import { LiteGraph } from '@comfyorg/litegraph';

export function loadGraph(graph, data) {
  const copy = JSON.parse(JSON.stringify(data));
  graph.weftConfiguring = true;
  try {
    graph.configure(copy);
  } finally {
    graph.weftConfiguring = false;
  }
  const missing = new Set();
  for (const node of graph._nodes) {
    if (!LiteGraph.registered_node_types[node.type] && node.last_serialization) missing.add(node.last_serialization.type);
  }
  for (const node of graph._nodes) node.onAfterGraphConfigured?.();
  return { missing: [...missing] };
}
