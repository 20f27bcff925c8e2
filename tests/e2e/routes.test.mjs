// Every HTTP route of `weft serve` and its /api twin: status codes and JSON shapes
// (comfyui-api.md sections 2 and 7; weft answers JSON 4xx where ComfyUI answers 500/plain text).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, get, post, del, req, isJsonError, invertPrompt, slowPrompt, submit,
  waitHistory, waitIdle, sleep, ms, assertCleanStop,
} from './helpers.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const twins = (p) => [p, '/api' + p];
const sortedKeys = (o) => Object.keys(o).sort();

function assertJsonError(r, status, what) {
  assert.equal(r.status, status, `${what}: status ${r.status} body ${r.text.slice(0, 300)}`);
  assert.ok(isJsonError(r), `${what}: expected a JSON error body, got ${r.headers.get('content-type')} ${JSON.stringify(r.text.slice(0, 300))}`);
}

function assertQueueItem(item, id) {
  assert.ok(Array.isArray(item) && item.length === 5, `queue item is a 5-tuple: ${JSON.stringify(item).slice(0, 200)}`);
  assert.equal(typeof item[0], 'number');
  assert.equal(item[1], id);
  assert.equal(typeof item[2], 'object');
  assert.equal(typeof item[3], 'object');
  assert.ok(Array.isArray(item[4]));
}

describe('routes', { timeout: ms(240000) }, () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { if (srv) await srv.stop(); });

  test('POST /prompt success shape, counter, and /api twin', async () => {
    const a = await post(srv, '/prompt', { prompt: invertPrompt({ prefix: 'r_a' }), client_id: 'routes' });
    assert.equal(a.status, 200, a.text);
    assert.match(a.headers.get('content-type'), /^application\/json/);
    assert.deepEqual(sortedKeys(a.json), ['node_errors', 'number', 'prompt_id']);
    assert.match(a.json.prompt_id, UUID);
    assert.equal(typeof a.json.number, 'number');
    assert.deepEqual(a.json.node_errors, {});
    const b = await post(srv, '/api/prompt', { prompt: invertPrompt({ prefix: 'r_b' }) });
    assert.equal(b.status, 200, b.text);
    assert.equal(b.json.number, a.json.number + 1, 'the counter advances by one per prompt');
    assert.notEqual(b.json.prompt_id, a.json.prompt_id);
    const ea = await waitHistory(srv, a.json.prompt_id);
    const eb = await waitHistory(srv, b.json.prompt_id);
    assert.equal(ea.status.status_str, 'success');
    assert.equal(eb.status.status_str, 'success');
  });

  test('POST /prompt without Content-Type, and ?clientId= on every URL', async () => {
    const r = await req(srv, 'POST', '/prompt?clientId=sdk1', { prompt: invertPrompt({ prefix: 'r_noct' }), client_id: 'sdk1' }, { contentType: false });
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.prompt_id, UUID);
    await waitHistory(srv, r.json.prompt_id);
    for (const p of ['/prompt', '/queue', '/history', `/history/${r.json.prompt_id}`, '/object_info',
      '/object_info/ImageInvert', '/system_stats', '/features', '/embeddings', '/extensions', '/models',
      '/models/loras']) {
      for (const u of twins(p)) {
        const g = await get(srv, `${u}?clientId=sdk1`);
        assert.equal(g.status, 200, `GET ${u}?clientId=sdk1 -> ${g.status} ${g.text.slice(0, 200)}`);
        assert.notEqual(g.json, undefined, `GET ${u}?clientId=sdk1 answers JSON`);
      }
    }
    const one = await get(srv, `/history/${r.json.prompt_id}?clientId=sdk1`);
    assert.deepEqual(Object.keys(one.json), [r.json.prompt_id]);
    const i = await req(srv, 'POST', '/interrupt?clientId=sdk1', undefined);
    assert.equal(i.status, 200);
  });

  test('POST /prompt: number, front, prompt_id, client_id and extra_pnginfo are honoured', async () => {
    const n = await post(srv, '/prompt', { prompt: invertPrompt({ prefix: 'r_num' }), number: 1000 });
    assert.equal(n.status, 200, n.text);
    assert.equal(n.json.number, 1000);
    const f = await post(srv, '/prompt', { prompt: invertPrompt({ prefix: 'r_front' }), front: true });
    assert.equal(f.status, 200, f.text);
    assert.ok(f.json.number < 0, `front gives a negative number, got ${f.json.number}`);
    const id = crypto.randomUUID();
    const wf = { nodes: [], links: [], version: 0.4 };
    const p = await post(srv, '/prompt', {
      prompt: invertPrompt({ prefix: 'r_id' }), prompt_id: id, client_id: 'cid-1',
      extra_data: { extra_pnginfo: { workflow: wf } },
    });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.json.prompt_id, id);
    const e = await waitHistory(srv, id);
    assertQueueItem(e.prompt, id);
    assert.equal(e.prompt[3].client_id, 'cid-1');
    assert.deepEqual(e.prompt[3].extra_pnginfo, { workflow: wf });
    assert.deepEqual(e.prompt[4], ['3']);
    assert.equal(e.prompt[2]['3'].class_type, 'SaveImage');
    await waitHistory(srv, n.json.prompt_id);
    await waitHistory(srv, f.json.prompt_id);
  });

  test('POST /prompt validation failure: 400 {error, node_errors} with exact types', async () => {
    const bad = invertPrompt();
    delete bad['2'].inputs.image;
    const before = (await get(srv, '/prompt')).json.exec_info.queue_remaining;
    for (const u of twins('/prompt')) {
      const r = await post(srv, u, { prompt: bad });
      assert.equal(r.status, 400, r.text);
      assert.deepEqual(sortedKeys(r.json), ['error', 'node_errors']);
      assert.deepEqual(r.json.error, {
        type: 'prompt_outputs_failed_validation',
        message: 'Prompt outputs failed validation',
        details: 'Required input is missing: image',
        extra_info: {},
      });
      assert.deepEqual(r.json.node_errors, {
        2: {
          errors: [{
            type: 'required_input_missing', message: 'Required input is missing',
            details: 'image', extra_info: { input_name: 'image' },
          }],
          dependent_outputs: ['3'],
          class_type: 'ImageInvert',
        },
      });
    }
    const unknown = await post(srv, '/prompt', { prompt: { 1: { class_type: 'NoSuchNode', inputs: {} } } });
    assert.equal(unknown.status, 400, unknown.text);
    assert.equal(unknown.json.error.type, 'invalid_prompt');
    assert.deepEqual(unknown.json.node_errors, {});
    const noOut = await post(srv, '/prompt', { prompt: { 1: { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } } } });
    assert.equal(noOut.status, 400, noOut.text);
    assert.equal(noOut.json.error.type, 'prompt_no_outputs');
    const after = (await get(srv, '/prompt')).json.exec_info.queue_remaining;
    assert.equal(after, before, 'rejected prompts are not queued');
  });

  test('POST /prompt: no_prompt, non-JSON and non-object bodies are 400 JSON', async () => {
    for (const u of twins('/prompt')) {
      const r = await post(srv, u, {});
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.type, 'no_prompt');
      assert.deepEqual(r.json.node_errors, {});
      assertJsonError(await post(srv, u, 'this is not json', { headers: { 'content-type': 'application/json' } }), 400, `${u} non-JSON`);
      assertJsonError(await post(srv, u, '{"prompt": {'), 400, `${u} truncated JSON`);
      assertJsonError(await post(srv, u, '[1,2,3]'), 400, `${u} JSON array`);
      assertJsonError(await post(srv, u, ''), 400, `${u} empty body`);
    }
  });

  test('GET /prompt', async () => {
    await waitIdle(srv);
    for (const u of twins('/prompt')) {
      const r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { exec_info: { queue_remaining: 0 } });
    }
  });

  test('GET/POST /queue: running + pending tuples, delete, clear', async () => {
    const slow = await submit(srv, slowPrompt({ prefix: 'r_slow' }));
    // Wait until the slow prompt is the running one.
    const deadline = performance.now() + ms(30000);
    let q;
    for (;;) {
      q = await get(srv, '/queue');
      assert.equal(q.status, 200);
      if (q.json.queue_running.length === 1) break;
      assert.ok(performance.now() < deadline, `slow prompt never ran: ${q.text.slice(0, 300)}`);
      await sleep(20);
    }
    const p1 = await submit(srv, invertPrompt({ prefix: 'r_pend1' }));
    const p2 = await submit(srv, invertPrompt({ prefix: 'r_pend2' }));
    const p3 = await submit(srv, invertPrompt({ prefix: 'r_pend3' }));
    for (const u of twins('/queue')) {
      q = await get(srv, u);
      assert.equal(q.status, 200);
      assert.deepEqual(sortedKeys(q.json), ['queue_pending', 'queue_running']);
      assert.equal(q.json.queue_running.length, 1);
      assertQueueItem(q.json.queue_running[0], slow.prompt_id);
      assert.deepEqual(q.json.queue_running[0][4], ['99']);
      const pend = [...q.json.queue_pending].sort((a, b) => a[0] - b[0]);
      assert.deepEqual(pend.map((it) => it[1]), [p1.prompt_id, p2.prompt_id, p3.prompt_id]);
      pend.forEach((it, i) => assertQueueItem(it, [p1, p2, p3][i].prompt_id));
      assert.deepEqual(pend.map((it) => it[0]), [p1.number, p2.number, p3.number]);
    }
    assert.equal((await get(srv, '/prompt')).json.exec_info.queue_remaining, 4);

    const d = await post(srv, '/queue', { delete: [p1.prompt_id, 'no-such-id'] });
    assert.equal(d.status, 200, d.text);
    assert.equal(d.text, '', 'POST /queue answers an empty body');
    q = await get(srv, '/queue');
    assert.deepEqual(q.json.queue_pending.map((it) => it[1]).sort(), [p2.prompt_id, p3.prompt_id].sort());
    const d2 = await post(srv, '/api/queue', { delete: [slow.prompt_id] });
    assert.equal(d2.status, 200);
    q = await get(srv, '/queue');
    assert.equal(q.json.queue_running.length, 1, 'a running prompt cannot be deleted through /queue');
    const c = await post(srv, '/api/queue', { clear: true });
    assert.equal(c.status, 200, c.text);
    q = await get(srv, '/queue');
    assert.deepEqual(q.json.queue_pending, []);
    assert.equal(q.json.queue_running.length, 1);
    assertJsonError(await post(srv, '/queue', 'not json'), 400, 'POST /queue non-JSON');

    const i = await post(srv, '/interrupt', undefined);
    assert.equal(i.status, 200);
    const e = await waitHistory(srv, slow.prompt_id);
    assert.equal(e.status.status_str, 'error');
    assert.equal(e.status.completed, false);
    await waitIdle(srv);
    for (const p of [p1, p2, p3]) {
      const h = await get(srv, `/history/${p.prompt_id}`);
      assert.deepEqual(h.json, {}, 'deleted/cleared prompts never ran');
    }
    q = await get(srv, '/queue');
    assert.deepEqual(q.json, { queue_running: [], queue_pending: [] });
  });

  test('GET /history/{id}: entry shape; {} for unknown', async () => {
    const { prompt_id: id } = await submit(srv, invertPrompt({ prefix: 'r_hist' }), { client_id: 'h' });
    await waitHistory(srv, id);
    for (const u of twins(`/history/${id}`)) {
      const r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.deepEqual(Object.keys(r.json), [id]);
      const e = r.json[id];
      for (const k of ['prompt', 'outputs', 'status', 'meta']) assert.ok(k in e, `history entry has ${k}`);
      assertQueueItem(e.prompt, id);
      assert.equal(e.status.status_str, 'success');
      assert.equal(e.status.completed, true);
      assert.ok(Array.isArray(e.status.messages));
      const types = e.status.messages.map((m) => m[0]);
      assert.deepEqual(types, ['execution_start', 'execution_cached', 'execution_success']);
      for (const [, data] of e.status.messages) {
        assert.equal(data.prompt_id, id);
        assert.equal(typeof data.timestamp, 'number');
      }
      const imgs = e.outputs['3'].images;
      assert.equal(imgs.length, 1);
      assert.match(imgs[0].filename, /^r_hist_\d{5}_\.png$/);
      assert.equal(imgs[0].subfolder, '');
      assert.equal(imgs[0].type, 'output');
      assert.deepEqual(e.meta['3'], { node_id: '3', display_node: '3', parent_node: null, real_node_id: '3' });
    }
    for (const u of twins('/history/00000000-0000-4000-8000-000000000000')) {
      const r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, {});
    }
  });

  test('GET /history max_items/offset paging; POST /history delete and clear', async () => {
    await waitIdle(srv);
    const all = await get(srv, '/history');
    assert.equal(all.status, 200);
    const L = Object.keys(all.json);
    assert.ok(L.length >= 4, `need a few entries, have ${L.length}`);
    const keys = async (q) => {
      const r = await get(srv, '/history' + q);
      assert.equal(r.status, 200, `${q}: ${r.text.slice(0, 200)}`);
      return Object.keys(r.json);
    };
    assert.deepEqual(await keys('?max_items=2'), L.slice(-2), 'max_items alone = the last N, oldest first');
    assert.deepEqual(await keys('?max_items=1&offset=0'), [L[0]]);
    assert.deepEqual(await keys('?offset=1'), L.slice(1));
    assert.deepEqual(await keys('?max_items=2&offset=1'), L.slice(1, 3));
    assert.deepEqual(await keys('?max_items=0'), []);
    assert.deepEqual(Object.keys((await get(srv, '/api/history?max_items=2')).json), L.slice(-2));
    assertJsonError(await get(srv, '/history?max_items=abc'), 400, 'max_items=abc');
    assertJsonError(await get(srv, '/history?offset=1.5'), 400, 'offset=1.5');

    const d = await post(srv, '/history', { delete: [L[0]] });
    assert.equal(d.status, 200, d.text);
    assert.equal(d.text, '');
    assert.deepEqual((await get(srv, `/history/${L[0]}`)).json, {});
    assert.deepEqual(await keys(''), L.slice(1));
    assertJsonError(await post(srv, '/history', '{oops'), 400, 'POST /history non-JSON');
    const c = await post(srv, '/api/history', { clear: true });
    assert.equal(c.status, 200);
    assert.deepEqual((await get(srv, '/history')).json, {});
  });

  test('GET /object_info and /object_info/{class}; {} for unknown', async () => {
    const all = await get(srv, '/object_info');
    assert.equal(all.status, 200);
    for (const cls of ['EmptyImage', 'ImageInvert', 'ImageScale', 'ImageBatch', 'LoadImage', 'SaveImage', 'PreviewImage']) {
      assert.ok(cls in all.json, `object_info has ${cls}`);
      const d = all.json[cls];
      for (const k of ['input', 'input_order', 'output', 'output_is_list', 'output_name', 'name', 'display_name', 'description', 'python_module', 'category', 'output_node']) {
        assert.ok(k in d, `${cls} has ${k}`);
      }
      assert.equal(d.name, cls);
    }
    assert.equal(all.json.SaveImage.output_node, true);
    assert.equal(all.json.ImageInvert.output_node, false);
    assert.deepEqual(all.json.ImageInvert.output, ['IMAGE']);
    assert.deepEqual(all.json.ImageInvert.input.required.image, ['IMAGE']);
    for (const u of twins('/object_info/ImageInvert')) {
      const one = await get(srv, u);
      assert.equal(one.status, 200);
      assert.deepEqual(one.json, { ImageInvert: all.json.ImageInvert });
    }
    for (const u of twins('/object_info/NoSuchNode')) {
      const r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, {});
    }
    const api = await get(srv, '/api/object_info');
    assert.deepEqual(api.json, all.json);
  });

  test('GET /system_stats, /features, /embeddings, /extensions, /health', async () => {
    for (const u of twins('/system_stats')) {
      const r = await get(srv, u);
      assert.equal(r.status, 200);
      const s = r.json.system;
      assert.equal(typeof s.os, 'string');
      assert.ok(Number.isFinite(s.ram_total) && s.ram_total > 0, 'ram_total');
      assert.ok(Number.isFinite(s.ram_free) && s.ram_free >= 0, 'ram_free');
      assert.equal(typeof s.comfyui_version, 'string');
      assert.ok(Array.isArray(s.argv));
      assert.ok(Array.isArray(r.json.devices) && r.json.devices.length >= 1);
      const dev = r.json.devices[0];
      for (const k of ['name', 'type', 'index', 'vram_total', 'vram_free', 'torch_vram_total', 'torch_vram_free']) {
        assert.ok(k in dev, `device has ${k}`);
      }
    }
    for (const u of twins('/features')) {
      const r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.equal(r.json.supports_preview_metadata, true);
      assert.equal(r.json.max_upload_size, 100 * 1024 * 1024);
    }
    for (const u of [...twins('/embeddings'), ...twins('/extensions')]) {
      const r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.ok(Array.isArray(r.json), `${u} is an array: ${r.text.slice(0, 100)}`);
    }
    for (const u of twins('/health')) {
      const r = await get(srv, u);
      assert.equal(r.status, 200, `${u}: ${r.text}`);
    }
  });

  test('GET /models, /models/{folder}; unknown folder 404 JSON', async () => {
    for (const u of twins('/models')) {
      const r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.ok(Array.isArray(r.json));
      for (const k of ['checkpoints', 'loras', 'vae', 'embeddings', 'upscale_models']) assert.ok(r.json.includes(k), `/models lists ${k}`);
    }
    for (const u of twins('/models/loras')) {
      const r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, []);
    }
    for (const u of twins('/models/nope')) assertJsonError(await get(srv, u), 404, u);
  });

  test('POST /interrupt and POST /free', async () => {
    for (const u of twins('/interrupt')) {
      assert.equal((await post(srv, u, undefined)).status, 200);
      assert.equal((await post(srv, u, { prompt_id: 'not-running' })).status, 200);
      assert.equal((await post(srv, u, 'not json')).status, 200, 'a non-JSON /interrupt body is treated as {}');
    }
    // A prompt run twice is cached the second time; after /free {free_memory} it is not.
    const a = await submit(srv, invertPrompt({ prefix: 'r_free', color: 123 }));
    await waitHistory(srv, a.prompt_id);
    const b = await submit(srv, invertPrompt({ prefix: 'r_free', color: 123 }));
    const eb = await waitHistory(srv, b.prompt_id);
    const cachedOf = (e) => e.status.messages.find((m) => m[0] === 'execution_cached')[1].nodes;
    assert.deepEqual(cachedOf(eb), ['1', '2', '3']);
    for (const u of twins('/free')) {
      const r = await post(srv, u, { unload_models: true, free_memory: true });
      assert.equal(r.status, 200, r.text);
    }
    assertJsonError(await post(srv, '/free', 'not json'), 400, 'POST /free non-JSON');
    await sleep(100);
    const c = await submit(srv, invertPrompt({ prefix: 'r_free', color: 123 }));
    const ec = await waitHistory(srv, c.prompt_id);
    assert.deepEqual(cachedOf(ec), [], 'free_memory dropped the cache');
  });

  test('userdata: write, 409, read, list, v2, move, delete, %2F-encoded names', async () => {
    const U = (p) => '/userdata/' + p;
    assertJsonError(await get(srv, '/userdata'), 400, 'GET /userdata without dir');
    assert.equal((await get(srv, '/userdata?dir=workflows')).status, 404);

    let r = await post(srv, U('workflows%2Fa.json?overwrite=true&full_info=true'), '{"a":1}');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.path, 'workflows/a.json');
    assert.equal(r.json.size, 7);
    assert.equal(typeof r.json.modified, 'number');
    r = await post(srv, '/api' + U('workflows%2Fb.json'), '{"b":2}');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json, 'workflows/b.json');
    r = await post(srv, U('workflows%2Fsub%2Fc.json?overwrite=false'), '{"c":3}');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json, 'workflows/sub/c.json');
    r = await post(srv, U('workflows%2Fa.json?overwrite=false'), '{"a":2}');
    assertJsonError(r, 409, 'overwrite=false on an existing file');

    for (const u of twins(U('workflows%2Fa.json'))) {
      r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.equal(r.text, '{"a":1}', 'the 409 changed nothing');
    }
    r = await get(srv, U('workflows%252Fb.json'));
    assert.equal(r.status, 200, 'a double-encoded name is decoded once more');
    assert.equal(r.text, '{"b":2}');
    assert.equal((await get(srv, U('workflows%2Fnope.json'))).status, 404);

    for (const u of twins('/userdata?dir=workflows')) {
      r = await get(srv, u);
      assert.equal(r.status, 200);
      assert.deepEqual([...r.json].sort(), ['a.json', 'b.json']);
    }
    r = await get(srv, '/userdata?dir=workflows&recurse=true');
    assert.deepEqual([...r.json].sort(), ['a.json', 'b.json', 'sub/c.json']);
    r = await get(srv, '/userdata?dir=workflows&recurse=true&split=true');
    assert.deepEqual([...r.json].sort((x, y) => x[0].localeCompare(y[0])),
      [['a.json', 'a.json'], ['b.json', 'b.json'], ['sub/c.json', 'sub', 'c.json']]);
    r = await get(srv, '/api/userdata?dir=workflows&recurse=true&split=false&full_info=true');
    assert.equal(r.status, 200);
    const a = r.json.find((x) => x.path === 'a.json');
    assert.ok(a, JSON.stringify(r.json));
    assert.equal(a.size, 7);
    assert.equal(typeof a.modified, 'number');

    for (const u of twins('/v2/userdata?path=workflows')) {
      r = await get(srv, u);
      assert.equal(r.status, 200, r.text);
      assert.ok(Array.isArray(r.json));
      assert.equal(r.json[0].type, 'directory', 'directories first');
      assert.deepEqual(r.json.find((x) => x.name === 'sub'), { name: 'sub', path: 'workflows/sub', type: 'directory' });
      const f = r.json.find((x) => x.name === 'a.json');
      assert.equal(f.path, 'workflows/a.json');
      assert.equal(f.type, 'file');
      assert.equal(f.size, 7);
      assert.equal(typeof f.modified, 'number');
      assert.ok(r.json.some((x) => x.path === 'workflows/sub/c.json'), 'v2 is recursive');
    }
    r = await get(srv, '/v2/userdata');
    assert.equal(r.status, 200);
    assert.ok(r.json.some((x) => x.path === 'workflows' && x.type === 'directory'));
    assert.equal((await get(srv, '/v2/userdata?path=nope')).status, 404);
    assert.equal((await get(srv, '/v2/userdata?path=workflows%2Fa.json')).status, 400);

    r = await post(srv, U('workflows%2Fa.json/move/workflows%2Fmoved.json?overwrite=false'), undefined);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json, 'workflows/moved.json');
    assert.equal((await get(srv, U('workflows%2Fa.json'))).status, 404);
    assert.equal((await get(srv, U('workflows%2Fmoved.json'))).text, '{"a":1}');
    r = await post(srv, '/api' + U('workflows%2Fb.json/move/workflows%2Fmoved.json?overwrite=false'), undefined);
    assertJsonError(r, 409, 'move onto an existing file');
    assert.equal((await get(srv, U('workflows%2Fb.json'))).text, '{"b":2}');
    r = await post(srv, U('workflows%2Fb.json/move/workflows%2Fmoved.json?overwrite=true&full_info=true'), undefined);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.path, 'workflows/moved.json');
    assert.equal((await get(srv, U('workflows%2Fmoved.json'))).text, '{"b":2}');
    r = await post(srv, U('workflows%2Fgone.json/move/workflows%2Fx.json'), undefined);
    assert.equal(r.status, 404);

    r = await del(srv, U('workflows%2Fmoved.json'));
    assert.equal(r.status, 204);
    assert.equal((await del(srv, '/api' + U('workflows%2Fmoved.json'))).status, 404);
    assert.equal((await get(srv, U('workflows%2Fmoved.json'))).status, 404);
  });

  test('unknown routes and methods answer 404/405 JSON', async () => {
    for (const u of ['/no/such/route', '/api/no/such/route', '/apix/prompt', '/prompt/extra/segments']) {
      assertJsonError(await get(srv, u), 404, u);
    }
    const r = await req(srv, 'DELETE', '/system_stats');
    assert.ok(r.status === 404 || r.status === 405, `DELETE /system_stats -> ${r.status}`);
    assert.ok(isJsonError(r), 'wrong method answers JSON');
  });

  test('shuts down cleanly on SIGTERM (exit 0, no sanitizer report)', async () => {
    const s = srv;
    srv = null;
    await assertCleanStop(assert, s);
  });
});
