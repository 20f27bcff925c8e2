// Shared set-up of the unit tests: litegraph with the node classes of a real weft
// /object_info snapshot plus the editor's own nodes, and the example workflows of the
// repository. test/fixtures/object_info.json is GET /object_info of `weft serve` on a base dir
// where `weft demo-model` ran (so ckpt_name lists weft-demo-tiny.safetensors); take it again
// when node definitions change (the browser tests always use the live server's).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LGraph, LiteGraph } from '@comfyorg/litegraph';
import { registerNodeDefs } from '../../src/nodeDefs.js';
import { registerFrontendNodes } from '../../src/frontendNodes.js';
import { loadGraph } from '../../src/graphLoad.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../../..');
export const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'));
export const objectInfo = readJson(path.join(here, '../fixtures/object_info.json'));
export const workflow = (name) => readJson(path.join(REPO, 'workflows', name));

let registered = false;
export function setup() {
  if (!registered) {
    registerNodeDefs(objectInfo);
    registerFrontendNodes();
    registered = true;
  }
  return { LiteGraph, LGraph };
}

/** A graph loaded from saved editor JSON. */
export function graphFrom(data) {
  setup();
  const g = new LGraph();
  const r = loadGraph(g, data);
  return { graph: g, ...r };
}

/** A fresh node of `type` added to `graph`. */
export function add(graph, type) {
  const n = LiteGraph.createNode(type);
  if (!n) throw new Error(`no node type ${type}`);
  graph.add(n);
  return n;
}

export const widget = (node, name) => node.widgets.find((w) => w.name === name);
export const slot = (node, name) => node.inputs.findIndex((i) => (i.widget?.name ?? i.name) === name);
