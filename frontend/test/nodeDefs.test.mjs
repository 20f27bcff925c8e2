// Node registration from /object_info: sockets, widgets and their order, defaults, limits,
// companions (control_after_generate, upload button), V1/V2 combos, and the layout ComfyUI's
// editor saves (so its workflows load into ours slot for slot).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LGraph, LiteGraph } from '@comfyorg/litegraph';
import { add, objectInfo, setup, widget } from './lib/setup.mjs';
import { registerNodeDefs, inputEntries } from '../src/nodeDefs.js';
import { normaliseSpec, decimalsOf, roundInt, roundFloat } from '../src/widgets.js';

setup();
const inputsOf = (n) => n.inputs.map((i) => [i.name, i.type, i.widget?.name ?? null]);
const widgetsOf = (n) => n.widgets.map((w) => [w.name, w.type, w.value]);

test('every /object_info class is registered with its display name and category', () => {
  for (const [name, def] of Object.entries(objectInfo)) {
    const C = LiteGraph.registered_node_types[name];
    assert.ok(C, name);
    assert.equal(C.title, def.display_name || name);
    assert.equal(C.category, def.category);
    assert.equal(C.comfyClass, name);
  }
  assert.ok(LiteGraph.registered_node_types.Reroute && LiteGraph.registered_node_types.PrimitiveNode);
});

test('KSampler: link sockets first, then widget sockets; seed gets its control combo', () => {
  const n = add(new LGraph(), 'KSampler');
  assert.deepEqual(inputsOf(n), [
    ['model', 'MODEL', null], ['positive', 'CONDITIONING', null], ['negative', 'CONDITIONING', null],
    ['latent_image', 'LATENT', null], ['seed', 'INT', 'seed'], ['steps', 'INT', 'steps'], ['cfg', 'FLOAT', 'cfg'],
    ['sampler_name', 'COMBO', 'sampler_name'], ['scheduler', 'COMBO', 'scheduler'], ['denoise', 'FLOAT', 'denoise'],
  ]);
  assert.deepEqual(widgetsOf(n), [
    ['seed', 'number', 0], ['control_after_generate', 'combo', 'randomize'], ['steps', 'number', 20],
    ['cfg', 'number', 8], ['sampler_name', 'combo', 'euler'], ['scheduler', 'combo', 'simple'], ['denoise', 'number', 1],
  ]);
  assert.deepEqual(n.outputs.map((o) => [o.name, o.type]), [['LATENT', 'LATENT']]);
  const cfg = widget(n, 'cfg');
  assert.equal(cfg.options.step2, 0.1);
  assert.equal(cfg.options.precision, 2); // round 0.01
  assert.equal(cfg.options.max, 100);
  const ctl = widget(n, 'control_after_generate');
  assert.equal(ctl.options.serialize, false);
  assert.equal(widget(n, 'seed').controlWidget, ctl);
  assert.deepEqual(ctl.options.values, ['fixed', 'increment', 'decrement', 'randomize']);
  // The saved form has seven widget values, control included, like ComfyUI's.
  assert.equal(n.serialize().widgets_values.length, 7);
});

test('CLIPTextEncode has a multiline text box; LoadImage has its combo plus the upload button', () => {
  const g = new LGraph();
  const clip = add(g, 'CLIPTextEncode');
  assert.deepEqual(inputsOf(clip), [['clip', 'CLIP', null], ['text', 'STRING', 'text']]);
  assert.equal(widget(clip, 'text').type, 'customtext');
  assert.equal(widget(clip, 'text').options.multiline, true);
  assert.ok(clip.size[0] >= 400 && clip.size[1] >= 180, `size ${clip.size}`);
  const li = add(g, 'LoadImage');
  assert.deepEqual(inputsOf(li), [['image', 'COMBO', 'image'], ['upload', 'IMAGEUPLOAD', 'upload']]);
  assert.deepEqual(widgetsOf(li), [['image', 'combo', ''], ['upload', 'button', 'image']]);
  assert.equal(widget(li, 'upload').options.serialize, false);
  assert.deepEqual(li.serialize().widgets_values, ['', 'image']);
  assert.deepEqual(li.outputs.map((o) => o.type), ['IMAGE', 'MASK']);
  const ck = add(g, 'CheckpointLoaderSimple');
  assert.deepEqual(widget(ck, 'ckpt_name').options.values, ['weft-demo-tiny.safetensors']);
  assert.equal(widget(ck, 'ckpt_name').value, 'weft-demo-tiny.safetensors');
});

test('number widgets clamp and round what people type', () => {
  const g = new LGraph();
  const e = add(g, 'EmptyImage');
  const w = widget(e, 'width');
  const ctx = { e: {}, node: e, canvas: { graph_mouse: [0, 0] } };
  w.setValue(70.4, ctx);
  assert.equal(w.value, 70);
  w.setValue(99999, ctx);
  assert.equal(w.value, 16384);
  w.setValue(-5, ctx);
  assert.equal(w.value, 1);
  const k = add(g, 'KSampler');
  const cfg = widget(k, 'cfg');
  cfg.setValue(7.456, ctx);
  assert.equal(cfg.value, 7.46);
  assert.equal(roundInt(70, { step2: 8, min: 0 }), 72);
  assert.equal(roundInt(3.5, { step2: 1, min: 0 }), 4);
  assert.equal(roundFloat(0.123456, { round: 0.001, precision: 3 }), 0.123);
  assert.equal(decimalsOf(0.01), 2);
  assert.equal(decimalsOf(1e-7), 7);
  assert.equal(decimalsOf(1), 0);
});

test('V1 and V2 combos, forceInput, BOOLEAN labels, optional and list outputs, hidden inputs', () => {
  assert.deepEqual(normaliseSpec([['a', 'b'], {}]), { type: 'COMBO', options: {}, values: ['a', 'b'] });
  assert.deepEqual(normaliseSpec(['COMBO', { options: ['x'], default: 'x' }]).values, ['x']);
  const names = registerNodeDefs({
    TestNode: {
      input: {
        required: {
          mode: ['COMBO', { options: ['fast', 'slow'], default: 'slow' }],
          flag: ['BOOLEAN', { default: true, label_on: 'yes', label_off: 'no' }],
          count: ['INT', { default: 3, min: 0, max: 10, forceInput: true }],
          noise_seed: ['INT', { default: 5, min: 0, max: 100 }],
        },
        optional: { mask: ['MASK'], note: ['STRING', { default: 'hi' }] },
        hidden: { prompt: 'PROMPT' },
      },
      input_order: { required: ['flag', 'mode', 'count', 'noise_seed'], optional: ['mask', 'note'] },
      output: ['IMAGE', 'INT'], output_is_list: [false, true], output_name: ['IMAGE', 'n'],
      name: 'TestNode', display_name: 'Test node', category: 'testing', output_node: false,
    },
  });
  assert.deepEqual(names, ['TestNode']);
  const n = add(new LGraph(), 'TestNode');
  assert.deepEqual(inputsOf(n), [
    ['count', 'INT', null], ['mask', 'MASK', null], ['flag', 'BOOLEAN', 'flag'], ['mode', 'COMBO', 'mode'],
    ['noise_seed', 'INT', 'noise_seed'], ['note', 'STRING', 'note'],
  ]);
  assert.equal(n.inputs[1].optional, true);
  assert.deepEqual(widgetsOf(n), [
    ['flag', 'toggle', true], ['mode', 'combo', 'slow'], ['noise_seed', 'number', 5],
    ['control_after_generate', 'combo', 'randomize'], ['note', 'text', 'hi'],
  ]);
  assert.deepEqual([widget(n, 'flag').options.on, widget(n, 'flag').options.off], ['yes', 'no']);
  assert.equal(n.outputs[1].name, 'n');
  assert.equal(n.outputs[1].shape, LiteGraph.GRID_SHAPE);
  assert.equal(inputEntries(objectInfo.SaveImage).some((e) => e.name === 'prompt'), false);
});

test('a saved node whose inputs predate a widget socket gets no duplicate socket', () => {
  const g = new LGraph();
  const n = add(g, 'SaveImage');
  n.configure({ id: n.id, type: 'SaveImage', inputs: [{ name: 'images', type: 'IMAGE', link: null }], widgets_values: ['x'] });
  assert.deepEqual(inputsOf(n), [['images', 'IMAGE', null], ['filename_prefix', 'STRING', 'filename_prefix']]);
  assert.equal(widget(n, 'filename_prefix').value, 'x');
  n.configure({ id: n.id, type: 'SaveImage', inputs: [{ name: 'filename_prefix', type: 'STRING', widget: { name: 'filename_prefix' }, link: null }, { name: 'images', type: 'IMAGE', link: null }] });
  assert.deepEqual(inputsOf(n).map((i) => i[0]), ['filename_prefix', 'images']);
});
