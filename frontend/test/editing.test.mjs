// Editing helpers that run without a browser: an API-only prompt becomes an editable graph that
// converts back to the same prompt, and undo/redo steps through real graph states.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LGraph } from '@comfyorg/litegraph';
import { add, graphFrom, setup, widget, workflow } from './lib/setup.mjs';
import { apiToGraph } from '../src/apiToGraph.js';
import { graphToPrompt } from '../src/graphToPrompt.js';
import { ChangeTracker } from '../src/changeTracker.js';
import { loadGraph } from '../src/graphLoad.js';

setup();

test('an API prompt opens as a graph with the same ids, values and links', () => {
  for (const name of ['txt2img.api.json', 'img2img.api.json', 'batch.api.json']) {
    const api = workflow(name);
    const g = new LGraph();
    const { missing } = apiToGraph(g, api);
    assert.deepEqual(missing, []);
    assert.deepEqual(graphToPrompt(g).output, api, name);
    // Laid out left to right: every node sits right of the nodes it reads from.
    for (const l of g.links.values()) assert.ok(g.getNodeById(l.origin_id).pos[0] < g.getNodeById(l.target_id).pos[0]);
  }
  const g = new LGraph();
  assert.deepEqual(apiToGraph(g, { 1: { class_type: 'Nope', inputs: {} } }).missing, ['Nope']);
});

test('undo and redo restore earlier graphs; the modified flag follows the saved state', () => {
  const { graph } = graphFrom(workflow('txt2img.ui.json'));
  const tracker = new ChangeTracker(() => graph.serialize(), (s) => loadGraph(graph, s));
  tracker.reset();
  assert.equal(tracker.modified, false);
  assert.equal(tracker.check(), false);
  const steps = widget(graph.getNodeById(3), 'steps');
  steps.value = 5;
  assert.equal(tracker.check(), true);
  assert.equal(tracker.modified, true);
  const n = add(graph, 'PreviewImage');
  graph.getNodeById(8).connect(0, n, 0);
  tracker.check();
  assert.equal(graph._nodes.length, 8);
  // View changes are not steps.
  graph.extra.ds = { scale: 2, offset: [5, 5] };
  assert.equal(tracker.check(), false);
  assert.equal(tracker.undo(), true);
  assert.equal(graph._nodes.length, 7);
  assert.equal(widget(graph.getNodeById(3), 'steps').value, 5);
  assert.equal(tracker.undo(), true);
  assert.equal(widget(graph.getNodeById(3), 'steps').value, 20);
  assert.equal(tracker.modified, false);
  assert.equal(tracker.undo(), false);
  assert.equal(tracker.redo(), true);
  assert.equal(tracker.redo(), true);
  assert.equal(graph._nodes.length, 8);
  assert.equal(graphToPrompt(graph).output[n.id].inputs.images[0], '8');
  // A new change after undo drops the redo branch.
  tracker.undo();
  widget(graph.getNodeById(3), 'cfg').value = 3;
  tracker.check();
  assert.equal(tracker.canRedo, false);
  tracker.markSaved();
  assert.equal(tracker.modified, false);
});
