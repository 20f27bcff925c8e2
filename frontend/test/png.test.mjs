// PNG text chunk reading (tEXt, zTXt, iTXt plain and compressed, CRC checks) and what a dropped
// file turns into: the embedded editor graph first, the API prompt otherwise; JSON files of
// either kind or a saved POST /prompt body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { iTXt, png, tEXt, zTXt } from './lib/pngWriter.mjs';
import { isPng, pngChunks, pngText } from '../src/png.js';
import { classifyWorkflow, workflowFromBytes } from '../src/workflowFormat.js';
import { REPO, workflow } from './lib/setup.mjs';

const u8 = (b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

test('reads tEXt, zTXt and iTXt (plain and compressed) text chunks, UTF-8 included', async () => {
  const bytes = png([tEXt('workflow', '{"a":"é✓"}'), zTXt('prompt', '{"b":2}'), iTXt('parameters', 'x y'), iTXt('comment', 'zipped ✓', true)]);
  assert.equal(isPng(u8(bytes)), true);
  assert.deepEqual(await pngText(u8(bytes)), { workflow: '{"a":"é✓"}', prompt: '{"b":2}', parameters: 'x y', comment: 'zipped ✓' });
  assert.deepEqual(pngChunks(u8(bytes)).map((c) => c.type), ['IHDR', 'tEXt', 'zTXt', 'iTXt', 'iTXt', 'IDAT']);
});

test('stops at a chunk whose CRC is wrong or that is cut short; rejects non-PNG bytes', async () => {
  const good = tEXt('a', '1');
  const bad = Buffer.from(tEXt('b', '2'));
  bad[bad.length - 1] ^= 0xff;
  assert.deepEqual(await pngText(u8(png([good, bad, tEXt('c', '3')]))), { a: '1' });
  const whole = png([good, tEXt('c', '3')]);
  const cut = whole.subarray(0, 8 + 25 + good.length + 10); // inside the "c" chunk
  assert.deepEqual(Object.keys(await pngText(u8(cut))), ['a']);
  assert.throws(() => pngChunks(new Uint8Array([1, 2, 3])), /not a PNG/);
});

test('the PNG the weft server saves carries the workflow it ran', async () => {
  // Built like SaveImage writes it: "prompt" (API JSON) then "workflow" (editor JSON).
  const ui = workflow('invert.ui.json');
  const api = workflow('invert.api.json');
  const bytes = png([tEXt('prompt', JSON.stringify(api)), tEXt('workflow', JSON.stringify(ui))]);
  const r = await workflowFromBytes(u8(bytes));
  assert.equal(r.kind, 'ui');
  assert.deepEqual(r.graph, ui);
  const onlyPrompt = await workflowFromBytes(u8(png([tEXt('prompt', JSON.stringify(api))])));
  assert.deepEqual(onlyPrompt, { kind: 'api', prompt: api });
  await assert.rejects(workflowFromBytes(u8(png([tEXt('Software', 'x')]))), /carries no workflow/);
});

test('JSON files: editor graph, API prompt, saved /prompt body; anything else is refused', async () => {
  const ui = workflow('txt2img.ui.json');
  const api = workflow('txt2img.api.json');
  const enc = (v) => new TextEncoder().encode(JSON.stringify(v));
  assert.equal((await workflowFromBytes(enc(ui))).kind, 'ui');
  assert.deepEqual(await workflowFromBytes(enc(api)), { kind: 'api', prompt: api });
  assert.deepEqual(classifyWorkflow({ prompt: api, extra_data: { extra_pnginfo: { workflow: ui } } }), { kind: 'ui', graph: ui });
  assert.deepEqual(classifyWorkflow({ prompt: api, client_id: 'x' }), { kind: 'api', prompt: api });
  assert.equal(classifyWorkflow({ a: 1 }), null);
  assert.equal(classifyWorkflow([]), null);
  await assert.rejects(workflowFromBytes(new TextEncoder().encode('not json')), /neither a PNG nor JSON/);
  await assert.rejects(workflowFromBytes(enc({ hello: 'world' })), /not a workflow/);
  // Every example workflow in the repository is recognised as what its name says.
  for (const f of readdirSync(path.join(REPO, 'workflows')).filter((n) => n.endsWith('.json'))) {
    const kind = (await workflowFromBytes(u8(readFileSync(path.join(REPO, 'workflows', f))))).kind;
    assert.equal(kind, f.includes('.ui.') ? 'ui' : 'api', f);
  }
});
