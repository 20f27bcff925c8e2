// Node search ranking over the real node set: display names first, class names, categories,
// typed filtering for a link dragged out of a socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiteGraph } from '@comfyorg/litegraph';
import { setup } from './lib/setup.mjs';
import { entriesFromTypes, scoreEntry, searchNodes } from '../src/search.js';

setup();
const entries = entriesFromTypes(Object.fromEntries(Object.entries(LiteGraph.registered_node_types)
  .filter(([t]) => !t.startsWith('Test') && t !== 'IntSource')));
const types = (q, o) => searchNodes(entries, q, o).map((e) => e.type);

test('an exact display name comes first, then prefixes and word starts', () => {
  assert.equal(types('Save Image')[0], 'SaveImage');
  assert.equal(types('ksampler')[0], 'KSampler');
  assert.deepEqual(types('ksampler').slice(0, 2), ['KSampler', 'KSamplerAdvanced']);
  assert.equal(types('empty latent')[0], 'EmptyLatentImage');
  assert.equal(types('clip text')[0], 'CLIPTextEncode');
  assert.ok(types('checkpoint').includes('CheckpointLoaderSimple'));
  assert.equal(types('load checkpoint')[0], 'CheckpointLoaderSimple');
});

test('categories and loose letter order also match; nonsense does not', () => {
  assert.ok(types('loaders').includes('VAELoader'));
  assert.ok(types('vaedec').includes('VAEDecode'));
  assert.deepEqual(types('zzzz'), []);
  assert.equal(scoreEntry('', { title: 'x', type: 'x' }), 1);
});

test('a link dragged from a LATENT output finds only nodes that take a LATENT', () => {
  const t = types('', { input: 'LATENT' });
  assert.ok(t.includes('VAEDecode') && t.includes('KSampler') && t.includes('Reroute'));
  assert.ok(!t.includes('SaveImage'));
  const o = types('', { output: 'CONDITIONING' });
  assert.ok(o.includes('CLIPTextEncode') && !o.includes('VAEDecode'));
});
