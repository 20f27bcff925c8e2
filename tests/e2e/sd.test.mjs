// Stable Diffusion through the real server: the random tiny demo checkpoint written by
// `weft demo-model`, the shipped txt2img/img2img workflows (sizes and steps reduced so the
// sanitizer build stays quick), progress per step, binary preview frames of both wire types,
// interrupt inside the sampler, the output cache, and a broken checkpoint file.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  REPO, WEFT_BIN, startServer, tmpRoot, get, post, form, WsClient, submit, waitHistory, waitIdle,
  ms, PNG_SIGNATURE, assertCleanStop,
} from './helpers.mjs';

const CKPT = 'weft-demo-tiny.safetensors';
const workflow = (name) => JSON.parse(readFileSync(path.join(REPO, 'workflows', name), 'utf8'));

function txt2img({ size = 64, steps = 3, seed = 1234, sampler = 'euler', scheduler = 'normal', prefix = 'sd' } = {}) {
  const p = workflow('txt2img.api.json');
  Object.assign(p['5'].inputs, { width: size, height: size });
  Object.assign(p['3'].inputs, { steps, seed, sampler_name: sampler, scheduler });
  p['9'].inputs.filename_prefix = prefix;
  return p;
}

const pngSize = (buf) => ({ w: buf.readUInt32BE(16), h: buf.readUInt32BE(20) });

describe('stable diffusion (tiny random checkpoint)', { timeout: ms(600000) }, () => {
  let root, srv;
  const sockets = [];
  const open = async (clientId, flags) => {
    const c = await WsClient.connect(srv, `clientId=${clientId}`);
    sockets.push(c);
    await c.waitFor((m) => m.type === 'status');
    if (flags) {
      c.send({ type: 'feature_flags', data: flags });
      await c.waitFor((m) => m.type === 'feature_flags');
    }
    return c;
  };

  before(async () => {
    root = tmpRoot('weft-sd-');
    const baseDir = path.join(root.dir, 'base');
    const r = spawnSync(WEFT_BIN, ['demo-model', '--base-dir', baseDir], { encoding: 'utf8' });
    assert.equal(r.status, 0, `weft demo-model failed: ${r.stderr}`);
    assert.match(r.stdout, /random weights/);
    srv = await startServer({ baseDir });
  });
  after(async () => {
    for (const c of sockets) c.close();
    if (srv) await assertCleanStop(assert, srv);
    if (root) root.cleanup();
  });

  test('object_info lists the SD nodes with ComfyUI inputs and the demo checkpoint', async () => {
    const r = await get(srv, '/object_info');
    assert.equal(r.status, 200);
    const ks = r.json.KSampler.input.required;
    for (const name of ['euler', 'euler_ancestral', 'heun', 'dpm_2', 'dpm_2_ancestral', 'lms', 'dpmpp_2m',
      'dpmpp_2s_ancestral', 'ddim', 'lcm', 'uni_pc']) assert.ok(ks.sampler_name[0].includes(name), name);
    for (const name of ['normal', 'karras', 'exponential', 'sgm_uniform', 'simple', 'ddim_uniform', 'beta']) {
      assert.ok(ks.scheduler[0].includes(name), name);
    }
    assert.match(r.text, /"seed": ?\["INT", ?\{[^}]*"max": ?18446744073709551615/, 'the seed max is exact');
    assert.deepEqual(r.json.CheckpointLoaderSimple.input.required.ckpt_name[0], [CKPT]);
    assert.deepEqual(r.json.CheckpointLoaderSimple.output, ['MODEL', 'CLIP', 'VAE']);
    for (const n of ['CLIPTextEncode', 'CLIPSetLastLayer', 'ConditioningCombine', 'EmptyLatentImage', 'VAEDecode',
      'VAEEncode', 'VAEDecodeTiled', 'LatentUpscale', 'SetLatentNoiseMask', 'KSamplerAdvanced', 'VAELoader']) {
      assert.ok(r.json[n], n);
    }
  });

  let firstImage;
  test('txt2img: progress every step, type-4 previews, the saved PNG', async () => {
    const c = await open('sd-meta', { supports_preview_metadata: true });
    const from = c.messages.length;
    const { prompt_id: id } = await submit(srv, txt2img({ steps: 3 }), { client_id: 'sd-meta' });
    await c.waitDone(id, { timeoutMs: ms(120000) });
    const msgs = c.messages.slice(from);
    const progress = msgs.filter((m) => m.type === 'progress' && m.data.node === '3');
    assert.deepEqual(progress.map((m) => [m.data.value, m.data.max]).filter(([v]) => v > 0), [[1, 3], [2, 3], [3, 3]]);
    const previews = msgs.filter((m) => m.type === '<binary>');
    assert.equal(previews.length, 3, 'one preview per step');
    for (const p of previews) {
      assert.equal(p.event, 4);
      const metaLen = p.payload.readUInt32BE(0);
      const meta = JSON.parse(p.payload.subarray(4, 4 + metaLen).toString('utf8'));
      assert.equal(meta.node_id, '3');
      assert.equal(meta.prompt_id, id);
      assert.equal(meta.image_type, 'image/png');
      const img = p.payload.subarray(4 + metaLen);
      assert.deepEqual(img.subarray(0, 8), PNG_SIGNATURE);
      assert.deepEqual(pngSize(img), { w: 8, h: 8 }, 'previews are at latent resolution');
    }
    assert.ok(msgs.some((m) => m.type === 'execution_success' && m.data.prompt_id === id));
    const h = await waitHistory(srv, id);
    assert.equal(h.status.status_str, 'success');
    const out = h.outputs['9'].images[0];
    const v = await fetch(`${srv.url}/view?filename=${encodeURIComponent(out.filename)}&type=output`);
    assert.equal(v.status, 200);
    firstImage = Buffer.from(await v.arrayBuffer());
    assert.deepEqual(firstImage.subarray(0, 8), PNG_SIGNATURE);
    assert.deepEqual(pngSize(firstImage), { w: 64, h: 64 });
  });

  test('a client without feature flags gets type-1 PNG previews; the same seed gives the same image', async () => {
    const c = await open('sd-plain');
    const from = c.messages.length;
    // Same graph, new filename prefix: only SaveImage and its inputs' cache differ.
    const { prompt_id: id } = await submit(srv, txt2img({ steps: 3, prefix: 'sd_again', seed: 1234, size: 64 }),
      { client_id: 'sd-plain' });
    await c.waitDone(id, { timeoutMs: ms(120000) });
    const msgs = c.messages.slice(from);
    const cached = msgs.find((m) => m.type === 'execution_cached');
    assert.deepEqual([...cached.data.nodes].sort(), ['3', '4', '5', '6', '7', '8'], 'everything but SaveImage is cached');
    assert.equal(msgs.filter((m) => m.type === '<binary>').length, 0, 'a cached sampler sends no previews');
    const h = await waitHistory(srv, id);
    const out = h.outputs['9'].images[0];
    const v = Buffer.from(await (await fetch(`${srv.url}/view?filename=${out.filename}&type=output`)).arrayBuffer());
    // The PNG text chunks carry the prompt (which differs in the prefix); compare the pixels' chunk.
    const idat = (b) => b.subarray(b.indexOf('IDAT') - 4);
    assert.deepEqual(idat(v), idat(firstImage), 'same seed, same pixels');

    const from2 = c.messages.length;
    const { prompt_id: id2 } = await submit(srv, txt2img({ steps: 2, seed: 99, sampler: 'euler_ancestral', scheduler: 'karras' }),
      { client_id: 'sd-plain' });
    await c.waitDone(id2, { timeoutMs: ms(120000) });
    const bins = c.messages.slice(from2).filter((m) => m.type === '<binary>');
    assert.equal(bins.length, 2);
    for (const b of bins) {
      assert.equal(b.event, 1);
      assert.equal(b.payload.readUInt32BE(0), 2, 'format 2 = PNG');
      assert.deepEqual(b.payload.subarray(4, 12), PNG_SIGNATURE);
    }
    const h2 = await waitHistory(srv, id2);
    assert.equal(h2.status.status_str, 'success');
  });

  test('img2img: upload, VAEEncode, denoise 0.5 runs half the schedule', async () => {
    const up = await post(srv, '/upload/image', form({}, [{ field: 'image', filename: 'src.png', data: firstImage }]));
    assert.equal(up.status, 200);
    const p = workflow('img2img.api.json');
    p['10'].inputs.image = up.json.name;
    Object.assign(p['3'].inputs, { steps: 4, denoise: 0.5 });
    const c = await open('sd-i2i');
    const from = c.messages.length;
    const { prompt_id: id } = await submit(srv, p, { client_id: 'sd-i2i' });
    await c.waitDone(id, { timeoutMs: ms(120000) });
    const steps = c.messages.slice(from).filter((m) => m.type === 'progress' && m.data.node === '3' && m.data.value > 0);
    assert.deepEqual(steps.map((m) => m.data.max), [4, 4, 4, 4]);
    const h = await waitHistory(srv, id);
    assert.equal(h.status.status_str, 'success', JSON.stringify(h.status));
    const out = h.outputs['9'].images[0];
    const v = Buffer.from(await (await fetch(`${srv.url}/view?filename=${out.filename}&type=output`)).arrayBuffer());
    assert.deepEqual(pngSize(v), { w: 64, h: 64 });
  });

  test('interrupt stops the sampler within a step', async () => {
    const c = await open('sd-int');
    const from = c.messages.length;
    const { prompt_id: id } = await submit(srv, txt2img({ steps: 500, seed: 7 }), { client_id: 'sd-int' });
    await c.waitFor((m) => m.type === 'progress' && m.data.prompt_id === id && m.data.value >= 2,
      { from, timeoutMs: ms(120000), what: 'sampler progress' });
    const r = await post(srv, '/interrupt', {});
    assert.equal(r.status, 200);
    await c.waitDone(id, { timeoutMs: ms(60000) });
    const msgs = c.messages.slice(from);
    const stop = msgs.find((m) => m.type === 'execution_interrupted');
    assert.ok(stop, 'execution_interrupted sent');
    assert.equal(stop.data.node_id, '3');
    const last = Math.max(...msgs.filter((m) => m.type === 'progress').map((m) => m.data.value));
    assert.ok(last < 500, `stopped early (at step ${last})`);
    const h = await waitHistory(srv, id);
    assert.equal(h.status.status_str, 'error');
  });

  test('/system_stats reports loaded models; /free unloads them and the next use loads them again', async () => {
    let st = await get(srv, '/system_stats');
    assert.equal(st.status, 200);
    assert.equal(st.json.models.loaded, 1, JSON.stringify(st.json.models));
    assert.ok(st.json.models.bytes > 1e6 && st.json.models.budget > st.json.models.bytes);
    assert.equal((await post(srv, '/free', { unload_models: true })).status, 200);
    await waitIdle(srv);
    st = await get(srv, '/system_stats');
    assert.deepEqual([st.json.models.loaded, st.json.models.bytes], [0, 0]);
    // The cached loader output is a handle: a new seed re-runs the sampler, which loads again.
    const { prompt_id: id } = await submit(srv, txt2img({ steps: 1, seed: 555 }));
    const h = await waitHistory(srv, id, ms(120000));
    assert.equal(h.status.status_str, 'success');
    const cached = h.status.messages.find((m) => m[0] === 'execution_cached')[1].nodes;
    assert.ok(cached.includes('4'), 'the loader itself stayed cached');
    st = await get(srv, '/system_stats');
    assert.equal(st.json.models.loaded, 1);
  });

  test('--preview-method none: progress still comes, previews do not', async () => {
    const base2 = path.join(root.dir, 'base-nopreview');
    const r = spawnSync(WEFT_BIN, ['demo-model', '--base-dir', base2], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const quiet = await startServer({ baseDir: base2, args: ['--preview-method', 'none'] });
    try {
      const c = await WsClient.connect(quiet, 'clientId=np');
      sockets.push(c);
      await c.waitFor((m) => m.type === 'status');
      c.send({ type: 'feature_flags', data: { supports_preview_metadata: true } });
      await c.waitFor((m) => m.type === 'feature_flags');
      const { prompt_id: id } = await submit(quiet, txt2img({ steps: 2, seed: 9 }), { client_id: 'np' });
      await c.waitDone(id, { timeoutMs: ms(120000) });
      const mine = c.messages.filter((m) => m.type === '<binary>' || (m.data && m.data.prompt_id === id));
      assert.deepEqual(mine.filter((m) => m.type === 'progress' && m.data.node === '3' && m.data.value > 0)
        .map((m) => m.data.value), [1, 2]);
      assert.equal(mine.filter((m) => m.type === '<binary>').length, 0);
    } finally {
      await assertCleanStop(assert, quiet);
    }
  });

  test('a corrupt checkpoint fails its prompt with a clear error and the server carries on', async () => {
    writeFileSync(path.join(srv.baseDir, 'models', 'checkpoints', 'broken.safetensors'),
      Buffer.concat([Buffer.from([0xff, 0xff, 0, 0, 0, 0, 0, 0]), Buffer.from('{"a":')]));
    const p = txt2img({ steps: 1, seed: 3 });
    p['4'].inputs.ckpt_name = 'broken.safetensors';
    const c = await open('sd-bad');
    const from = c.messages.length;
    const { prompt_id: id } = await submit(srv, p, { client_id: 'sd-bad' });
    await c.waitDone(id, { timeoutMs: ms(60000) });
    const err = c.messages.slice(from).find((m) => m.type === 'execution_error');
    assert.ok(err, 'execution_error sent');
    assert.equal(err.data.node_id, '4');
    assert.match(err.data.exception_message, /broken\.safetensors|header/i);
    await waitIdle(srv);
    const ok = await submit(srv, txt2img({ steps: 1, seed: 4 }));
    const h = await waitHistory(srv, ok.prompt_id, ms(120000));
    assert.equal(h.status.status_str, 'success');
  });
});
