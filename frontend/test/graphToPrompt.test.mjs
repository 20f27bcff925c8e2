// Graph → API prompt: the repository's ComfyUI-format workflows convert to their API files
// exactly (and survive a load/save round trip), and the frontend-only constructs are resolved
// the way ComfyUI does: reroute chains, primitives, muted and bypassed nodes, list values,
// partial execution, and control_after_generate after queueing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LGraph } from '@comfyorg/litegraph';
import { add, graphFrom, setup, slot, widget, workflow } from './lib/setup.mjs';
import { graphToPrompt, resolveInput, MODE_BYPASS, MODE_NEVER } from '../src/graphToPrompt.js';
import { applyControls, nextValue } from '../src/valueControl.js';
import { registerNodeDefs } from '../src/nodeDefs.js';

setup();

for (const name of ['txt2img', 'img2img']) {
  test(`workflows/${name}.ui.json converts to ${name}.api.json and round-trips unchanged`, () => {
    const ui = workflow(`${name}.ui.json`);
    const { graph, missing } = graphFrom(ui);
    assert.deepEqual(missing, []);
    assert.deepEqual(graphToPrompt(graph).output, workflow(`${name}.api.json`));
    // Saving what was opened gives back ComfyUI's file: same nodes, sockets, values, links.
    const saved = graph.serialize();
    assert.deepEqual(saved.links, ui.links);
    assert.equal(saved.last_node_id, ui.last_node_id);
    assert.equal(saved.last_link_id, ui.last_link_id);
    for (const n of ui.nodes) {
      const s = saved.nodes.find((x) => x.id === n.id);
      assert.ok(s, `node ${n.id}`);
      assert.equal(s.type, n.type);
      assert.equal(s.mode, n.mode);
      assert.deepEqual(s.pos, n.pos);
      assert.deepEqual(s.widgets_values, n.widgets_values, `widgets_values of ${n.id}`);
      assert.deepEqual(s.inputs.map((i) => [i.name, i.type, i.link, i.widget?.name]), n.inputs.map((i) => [i.name, i.type, i.link, i.widget?.name]));
      assert.deepEqual(s.outputs.map((o) => [o.name, o.type, o.links]), n.outputs.map((o) => [o.name, o.type, o.links]));
    }
    // And the saved graph converts to the same prompt again.
    assert.deepEqual(graphToPrompt(graphFrom(saved).graph).output, workflow(`${name}.api.json`));
  });
}

test('workflows/invert.ui.json: primitive, reroute, bypassed and muted nodes resolve like ComfyUI', () => {
  const { graph } = graphFrom(workflow('invert.ui.json'));
  const expected = {
    ...workflow('invert.api.json'),
    9: { inputs: { images: ['1', 0] }, class_type: 'PreviewImage', _meta: { title: 'Preview Image' } },
  };
  assert.deepEqual(graphToPrompt(graph).output, expected);
  // The primitive rebuilt its widget from EmptyImage's width, kept its saved value and control.
  const prim = graph.getNodeById(6);
  assert.deepEqual(prim.widgets.map((w) => [w.name, w.value]), [['value', 64], ['control_after_generate', 'fixed']]);
  assert.equal(prim.outputs[0].type, 'INT');
  assert.deepEqual(graph.serialize().nodes.find((n) => n.id === 6).widgets_values, [64, 'fixed']);
  // The reroute carries IMAGE.
  assert.equal(graph.getNodeById(5).outputs[0].type, 'IMAGE');
});

function chain() {
  const g = new LGraph();
  const img = add(g, 'EmptyImage');
  const r1 = add(g, 'Reroute');
  const r2 = add(g, 'Reroute');
  const inv = add(g, 'ImageInvert');
  const save = add(g, 'SaveImage');
  img.connect(0, r1, 0);
  r1.connect(0, r2, 0);
  r2.connect(0, inv, 0);
  inv.connect(0, save, slot(save, 'images'));
  return { g, img, r1, r2, inv, save };
}

test('a chain of reroutes collapses to the real origin and takes its type', () => {
  const { g, img, r1, r2, inv, save } = chain();
  assert.equal(r1.outputs[0].type, 'IMAGE');
  assert.equal(r2.outputs[0].type, 'IMAGE');
  const out = graphToPrompt(g).output;
  assert.deepEqual(Object.keys(out).sort(), [img.id, inv.id, save.id].map(String).sort());
  assert.deepEqual(out[inv.id].inputs, { image: [String(img.id), 0] });
  assert.deepEqual(out[save.id].inputs, { filename_prefix: 'ComfyUI', images: [String(inv.id), 0] });
  // An unconnected reroute is a dead end: the input is left out (the server reports it missing).
  g.removeLink(img.outputs[0].links[0]);
  assert.equal(resolveInput(g, inv, 0), null);
  assert.deepEqual(graphToPrompt(g).output[inv.id].inputs, {});
});

test('a bypassed node passes its matching input through; a muted one is dropped with its links', () => {
  const { g, img, inv, save } = chain();
  inv.mode = MODE_BYPASS;
  let out = graphToPrompt(g).output;
  assert.equal(out[inv.id], undefined);
  assert.deepEqual(out[save.id].inputs.images, [String(img.id), 0]);
  inv.mode = MODE_NEVER;
  out = graphToPrompt(g).output;
  assert.equal(out[inv.id], undefined);
  assert.deepEqual(out[save.id].inputs, { filename_prefix: 'ComfyUI' });
  // A bypassed node without an input of the output's type is a dead end.
  inv.mode = 0;
  const ck = add(g, 'CheckpointLoaderSimple');
  const dec = add(g, 'VAEDecode');
  ck.connect(2, dec, slot(dec, 'vae'));
  dec.connect(0, inv, 0);
  ck.mode = MODE_BYPASS;
  assert.equal(resolveInput(g, dec, slot(dec, 'vae')), null);
});

test('a primitive writes its value into every widget input it feeds', () => {
  const g = new LGraph();
  const prim = add(g, 'PrimitiveNode');
  const a = add(g, 'EmptyImage');
  const b = add(g, 'EmptyLatentImage');
  prim.connect(0, a, slot(a, 'width'));
  assert.equal(prim.outputs[0].type, 'INT');
  assert.deepEqual(prim.widgets.map((w) => w.name), ['value', 'control_after_generate']);
  prim.connect(0, b, slot(b, 'height'));
  prim.widgets[0].value = 96;
  const out = graphToPrompt(g).output;
  assert.equal(out[a.id].inputs.width, 96);
  assert.equal(out[b.id].inputs.height, 96);
  assert.equal(out[prim.id], undefined);
  // A primitive cannot feed a plain socket: the link is refused.
  const inv = add(g, 'ImageInvert');
  const p2 = add(g, 'PrimitiveNode');
  p2.connect(0, inv, 0);
  assert.equal(inv.inputs[0].link, null);
  assert.equal(p2.widgets.length, 0);
});

test('a node feeding a widget input replaces the widget value with a link', () => {
  registerNodeDefs({
    IntSource: { input: { required: {} }, output: ['INT'], output_name: ['INT'], name: 'IntSource', display_name: 'Int', category: 'testing' },
  });
  const g = new LGraph();
  const k = add(g, 'KSampler');
  const src = add(g, 'IntSource');
  const r = add(g, 'Reroute');
  src.connect(0, r, 0);
  assert.ok(r.connect(0, k, slot(k, 'seed')));
  assert.equal(add(g, 'EmptyImage').connect(0, k, slot(k, 'steps')), null); // IMAGE into INT: refused
  const out = graphToPrompt(g).output;
  assert.deepEqual(out[k.id].inputs.seed, [String(src.id), 0]);
  assert.equal(out[k.id].inputs.steps, 20);
  assert.equal('control_after_generate' in out[k.id].inputs, false);
  assert.deepEqual(Object.keys(out[k.id].inputs).slice(0, 2), ['seed', 'steps']); // widget order kept
});

test('list values are wrapped so the server does not read them as links', () => {
  const g = new LGraph();
  const e = add(g, 'EmptyImage');
  widget(e, 'color').value = [1, 2];
  assert.deepEqual(graphToPrompt(g).output[e.id].inputs.color, { __value__: [1, 2] });
});

test('partial execution keeps the chosen outputs and their ancestors only', () => {
  const { g, img, inv, save } = chain();
  const prev = add(g, 'PreviewImage');
  const img2 = add(g, 'EmptyImage');
  img2.connect(0, prev, 0);
  const all = graphToPrompt(g).output;
  assert.equal(Object.keys(all).length, 5);
  const part = graphToPrompt(g, { targets: [save.id] }).output;
  assert.deepEqual(Object.keys(part).sort(), [img.id, inv.id, save.id].map(String).sort());
});

test('nodes whose type the server lacks are reported and left out', () => {
  const ui = workflow('txt2img.ui.json');
  ui.nodes.push({ id: 42, type: 'NoSuchNode', pos: [0, 0], size: [100, 40], flags: {}, order: 9, mode: 0, inputs: [], outputs: [], properties: {} });
  const { graph, missing } = graphFrom(ui);
  assert.deepEqual(missing, ['NoSuchNode']);
  const r = graphToPrompt(graph);
  assert.deepEqual(r.missing, [{ id: 42, type: 'NoSuchNode' }]);
  assert.equal(r.output[42], undefined);
  assert.equal(Object.keys(r.output).length, 7);
});

test('control_after_generate: increment, decrement, fixed, randomize; combos; primitives', () => {
  const g = new LGraph();
  const k = add(g, 'KSampler');
  const seed = widget(k, 'seed');
  const ctl = widget(k, 'control_after_generate');
  seed.value = 42;
  ctl.value = 'increment';
  assert.equal(applyControls(g), 1);
  assert.equal(seed.value, 43);
  ctl.value = 'decrement';
  applyControls(g);
  assert.equal(seed.value, 42);
  ctl.value = 'fixed';
  assert.equal(applyControls(g), 0);
  assert.equal(seed.value, 42);
  ctl.value = 'randomize';
  applyControls(g, { random: () => 0.5 });
  assert.equal(seed.value, 562949953421312); // half of the 2^50 range, a whole multiple of step 1
  // Edges: clamped to the limits; combos step through their list.
  assert.equal(nextValue('decrement', 0, { min: 0, max: 10, step2: 1 }), 0);
  assert.equal(nextValue('increment', 10, { min: 0, max: 10, step2: 1 }), 10);
  assert.equal(nextValue('increment', 'a', {}, ['a', 'b']), 'b');
  assert.equal(nextValue('increment', 'b', {}, ['a', 'b']), 'b');
  assert.equal(nextValue('randomize', 'a', {}, ['a', 'b', 'c'], () => 0.99), 'c');
  assert.equal(nextValue('increment', 0.5, { min: 0, max: 1, step2: 0.1, precision: 2 }), 0.6);
  // A primitive's control moves its own value and so what it feeds.
  const p = add(g, 'PrimitiveNode');
  const e = add(g, 'EmptyImage');
  p.connect(0, e, slot(e, 'width'));
  p.widgets[0].value = 64;
  p.widgets[1].value = 'increment';
  ctl.value = 'fixed';
  applyControls(g, { onChange: (node) => node.onWidgetValueSet?.() });
  assert.equal(p.widgets[0].value, 65);
  assert.equal(graphToPrompt(g).output[e.id].inputs.width, 65);
});
