// WebSocket events of `weft serve` (comfyui-api.md section 3): order for a successful, a cached,
// a failing and an interrupted prompt; several observers of one client id; watching a prompt id
// after it finished; feature flags; framing (ping, fragments, oversized messages, close).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, get, post, WsClient, invertPrompt, slowPrompt, submit, waitHistory, waitIdle,
  summary, form, sleep, ms, PNG_SIGNATURE, assertCleanStop,
} from './helpers.mjs';

// The lifecycle of one prompt as a list of summaries, without progress noise.
const lifecycle = (c, id, from = 0) => c.messages.slice(from)
  .filter((m) => m.data && m.data.prompt_id === id && m.type !== 'progress' && m.type !== 'progress_state')
  .map(summary);

describe('websocket', { timeout: ms(300000) }, () => {
  let srv;
  const sockets = [];
  const open = async (query, opts) => {
    const c = await WsClient.connect(srv, query, opts);
    sockets.push(c);
    return c;
  };
  before(async () => { srv = await startServer(); });
  after(async () => {
    for (const c of sockets) c.close();
    if (srv) await srv.stop();
  });

  test('status with sid on connect; a minted sid without clientId; /api/ws', async () => {
    const a = await open('clientId=c-status');
    const { msg } = await a.waitFor((m) => m.type === 'status', { timeoutMs: ms(5000) });
    assert.deepEqual(msg, { type: 'status', data: { status: { exec_info: { queue_remaining: 0 } }, sid: 'c-status' } });
    assert.equal(a.messages.indexOf(msg), 0, 'status is the first message');
    const b = await open('');
    const s = await b.waitFor((m) => m.type === 'status', { timeoutMs: ms(5000) });
    assert.match(s.msg.data.sid, /^[0-9a-f]{32}$/);
    const c = await open('clientId=c-api', { path: '/api/ws' });
    const t = await c.waitFor((m) => m.type === 'status', { timeoutMs: ms(5000) });
    assert.equal(t.msg.data.sid, 'c-api');
  });

  test('feature_flags: the first client frame gets the server flags back', async () => {
    const c = await open('clientId=c-flags');
    await c.waitFor((m) => m.type === 'status');
    c.send({ type: 'feature_flags', data: { supports_preview_metadata: true, supports_manager_v4_ui: true } });
    const { msg } = await c.waitFor((m) => m.type === 'feature_flags', { timeoutMs: ms(5000) });
    assert.equal(msg.data.supports_preview_metadata, true);
    assert.equal(msg.data.max_upload_size, 100 * 1024 * 1024);
  });

  let firstImages;
  const orderPrompt = invertPrompt({ prefix: 'ws_order', color: 4242 });

  test('successful prompt: event order, executed images, /view returns the PNG', async () => {
    const c = await open('clientId=order');
    await c.waitFor((m) => m.type === 'status');
    const start = c.messages.length;
    const { prompt_id: id } = await submit(srv, orderPrompt, { client_id: 'order' });
    await c.waitDone(id);
    assert.deepEqual(lifecycle(c, id, start), [
      'execution_start', 'execution_cached', 'executing:1', 'executing:2', 'executing:3', 'executed:3',
      'execution_success', 'executing:null',
    ]);
    const msgs = c.messages.slice(start);
    const idx = (type, node) => msgs.findIndex((m) => m.type === type && m.data.prompt_id === id &&
      (node === undefined || m.data.node === node));
    const iStart = idx('execution_start');
    const iSuccess = idx('execution_success');
    const iEnd = idx('executing', null);
    assert.ok(msgs.slice(0, iStart).some((m) => m.type === 'status' && m.data.status.exec_info.queue_remaining >= 1),
      'a status with queue_remaining >= 1 precedes execution_start');
    const between = msgs.slice(iSuccess + 1, iEnd).filter((m) => m.type === 'status');
    assert.ok(between.length >= 1, 'a status is sent between execution_success and executing null');
    assert.equal(between.at(-1).data.status.exec_info.queue_remaining, 0);

    const es = msgs[iStart].data;
    assert.equal(typeof es.timestamp, 'number');
    assert.deepEqual(msgs[idx('execution_cached')].data.nodes, []);
    assert.deepEqual(msgs[idx('executing', '1')].data, { node: '1', display_node: '1', prompt_id: id });
    const ex = msgs[idx('executed')].data;
    assert.equal(ex.node, '3');
    assert.equal(ex.display_node, '3');
    assert.equal(ex.prompt_id, id);
    assert.equal(ex.output.images.length, 1);
    const img = ex.output.images[0];
    assert.deepEqual(Object.keys(img).sort(), ['filename', 'subfolder', 'type']);
    assert.equal(img.filename, 'ws_order_00001_.png');
    assert.equal(img.subfolder, '');
    assert.equal(img.type, 'output');
    assert.equal(typeof msgs[iSuccess].data.timestamp, 'number');
    firstImages = ex.output.images;

    const hist = await waitHistory(srv, id);
    assert.deepEqual(hist.outputs['3'].images, firstImages);

    const v = await get(srv, `/view?filename=${encodeURIComponent(img.filename)}&subfolder=&type=output`);
    assert.equal(v.status, 200);
    assert.match(v.headers.get('content-type'), /^image\/png/);
    assert.deepEqual(v.bytes.subarray(0, 8), PNG_SIGNATURE);
    const v2 = await get(srv, `/api/view?filename=${encodeURIComponent(img.filename)}`);
    assert.equal(v2.status, 200, 'type defaults to output');
    assert.deepEqual(v2.bytes, v.bytes);
  });

  test('an identical prompt is fully cached; SaveImage still sends executed', async () => {
    assert.ok(firstImages, 'needs the previous test');
    const c = await open('clientId=cached');
    await c.waitFor((m) => m.type === 'status');
    const start = c.messages.length;
    const { prompt_id: id } = await submit(srv, orderPrompt, { client_id: 'cached' });
    await c.waitDone(id);
    assert.deepEqual(lifecycle(c, id, start),
      ['execution_start', 'execution_cached', 'executed:3', 'execution_success', 'executing:null']);
    const cached = c.messages.find((m) => m.type === 'execution_cached' && m.data.prompt_id === id);
    assert.deepEqual(cached.data.nodes, ['1', '2', '3']);
    const ex = c.messages.find((m) => m.type === 'executed' && m.data.prompt_id === id);
    assert.deepEqual(ex.data.output.images, firstImages, 'the cached UI output is sent again');
    const hist = await waitHistory(srv, id);
    assert.equal(hist.status.status_str, 'success');
  });

  test('a failing node: execution_error, then status and executing null; history status error', async () => {
    const up = await post(srv, '/upload/image', form({ type: 'input' }, [{ filename: 'x.png', data: Buffer.from('this is not a PNG file at all') }]));
    assert.equal(up.status, 200, up.text);
    assert.equal(up.json.name, 'x.png');
    const c = await open('clientId=fail');
    await c.waitFor((m) => m.type === 'status');
    const start = c.messages.length;
    const prompt = {
      1: { class_type: 'LoadImage', inputs: { image: 'x.png' } },
      2: { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
    };
    const r = await post(srv, '/prompt', { prompt, client_id: 'fail' });
    assert.equal(r.status, 200, `LoadImage of an existing file passes validation: ${r.text}`);
    const id = r.json.prompt_id;
    await c.waitDone(id);
    const seq = lifecycle(c, id, start);
    assert.deepEqual(seq, ['execution_start', 'execution_cached', 'executing:1', 'execution_error', 'executing:null']);
    const err = c.messages.find((m) => m.type === 'execution_error' && m.data.prompt_id === id).data;
    assert.equal(err.node_id, '1');
    assert.equal(err.node_type, 'LoadImage');
    assert.equal(typeof err.exception_message, 'string');
    assert.ok(err.exception_message.length > 0, 'a message says what went wrong');
    assert.equal(typeof err.exception_type, 'string');
    assert.ok(Array.isArray(err.executed));
    assert.equal(typeof err.timestamp, 'number');
    const iErr = c.messages.indexOf(c.messages.find((m) => m.type === 'execution_error' && m.data.prompt_id === id));
    const iEnd = c.messages.findIndex((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === id);
    assert.ok(c.messages.slice(iErr, iEnd).some((m) => m.type === 'status'), 'status between execution_error and executing null');
    const hist = await waitHistory(srv, id);
    assert.equal(hist.status.status_str, 'error');
    assert.equal(hist.status.completed, false);
    const last = hist.status.messages.at(-1);
    assert.equal(last[0], 'execution_error');
    assert.equal(last[1].node_id, '1');
    assert.equal(last[1].exception_message, err.exception_message);
  });

  test('interrupt: by prompt id (other ids ignored) and global; reconnect sees the running node; a ?prompt_id= watcher follows; next prompt runs', async () => {
    const c = await open('clientId=intr');
    await c.waitFor((m) => m.type === 'status');
    const a = await submit(srv, slowPrompt({ prefix: 'ws_slow_a' }), { client_id: 'intr' });
    await c.waitFor((m) => m.type === 'executing' && m.data.prompt_id === a.prompt_id && m.data.node !== null,
      { what: 'first executing of the slow prompt' });

    // A reconnecting client of the same id learns the current state at once.
    const re = await open('clientId=intr');
    await re.waitFor((m) => m.type === 'status', { timeoutMs: ms(5000) });
    const cur = await re.waitFor((m) => m.type === 'executing' && typeof m.data.node === 'string',
      { timeoutMs: ms(3000), what: 'current-state executing on reconnect' });
    assert.ok(cur.msg.data.node in slowPrompt(), `a node of the running prompt: ${cur.msg.data.node}`);

    assert.equal((await post(srv, '/interrupt', { prompt_id: '00000000-0000-4000-8000-000000000000' })).status, 200);
    await sleep(ms(400));
    assert.ok(!c.forPrompt(a.prompt_id).some((m) => m.type === 'execution_interrupted' || (m.type === 'executing' && m.data.node === null)),
      'an interrupt for another prompt id is a no-op');
    const t0 = performance.now();
    assert.equal((await post(srv, '/interrupt', { prompt_id: a.prompt_id })).status, 200);
    const { msg } = await c.waitFor((m) => m.type === 'execution_interrupted' && m.data.prompt_id === a.prompt_id,
      { timeoutMs: ms(20000), what: 'execution_interrupted (targeted)' });
    const reactMs = performance.now() - t0;
    assert.equal(typeof msg.data.node_id, 'string');
    assert.equal(typeof msg.data.node_type, 'string');
    assert.ok(Array.isArray(msg.data.executed));
    assert.equal(typeof msg.data.timestamp, 'number');
    await c.waitDone(a.prompt_id);
    assert.ok(!c.forPrompt(a.prompt_id).some((m) => m.type === 'execution_success'));
    const ha = await waitHistory(srv, a.prompt_id);
    assert.equal(ha.status.status_str, 'error');
    assert.ok(ha.status.messages.some((m) => m[0] === 'execution_interrupted'));
    assert.ok(reactMs < ms(10000), `interrupt took ${reactMs} ms`);

    const b = await submit(srv, slowPrompt({ prefix: 'ws_slow_b', color: 1 }), { client_id: 'intr' });
    // Another client watches this prompt by id while it runs.
    const watcher = await open(`prompt_id=${b.prompt_id}&clientId=watcher`);
    await watcher.waitFor((m) => m.type === 'executing' && m.data.prompt_id === b.prompt_id && m.data.node !== null,
      { what: 'the watcher sees the prompt executing' });
    await c.waitFor((m) => m.type === 'executing' && m.data.prompt_id === b.prompt_id && m.data.node !== null);
    assert.equal((await post(srv, '/api/interrupt', undefined)).status, 200);
    await c.waitFor((m) => m.type === 'execution_interrupted' && m.data.prompt_id === b.prompt_id,
      { timeoutMs: ms(20000), what: 'execution_interrupted (global)' });
    await c.waitDone(b.prompt_id);
    await watcher.waitFor((m) => m.type === 'execution_interrupted' && m.data.prompt_id === b.prompt_id,
      { timeoutMs: ms(5000), what: 'the watcher sees execution_interrupted' });
    await watcher.waitDone(b.prompt_id, { timeoutMs: ms(5000) });

    const start = c.messages.length;
    const n = await submit(srv, invertPrompt({ prefix: 'ws_after_intr', color: 77 }), { client_id: 'intr' });
    await c.waitDone(n.prompt_id);
    assert.deepEqual(lifecycle(c, n.prompt_id, start), [
      'execution_start', 'execution_cached', 'executing:1', 'executing:2', 'executing:3', 'executed:3',
      'execution_success', 'executing:null',
    ]);
  });

  test('two sockets with the same clientId both see every event; others see none', async () => {
    const c1 = await open('clientId=twin');
    const c2 = await open('clientId=twin');
    const other = await open('clientId=other');
    await Promise.all([c1, c2, other].map((c) => c.waitFor((m) => m.type === 'status')));
    const { prompt_id: id } = await submit(srv, invertPrompt({ prefix: 'ws_twin', color: 99 }), { client_id: 'twin' });
    await Promise.all([c1.waitDone(id), c2.waitDone(id)]);
    const s1 = lifecycle(c1, id);
    assert.deepEqual(s1, [
      'execution_start', 'execution_cached', 'executing:1', 'executing:2', 'executing:3', 'executed:3',
      'execution_success', 'executing:null',
    ]);
    assert.deepEqual(lifecycle(c2, id), s1);
    await sleep(100);
    const leaked = lifecycle(other, id).filter((t) => t !== 'progress');
    assert.deepEqual(leaked, [], 'events of a prompt go to its client only');
  });

  test('a socket with ?prompt_id= connecting after the prompt finished learns the outcome', async () => {
    const { prompt_id: id } = await submit(srv, invertPrompt({ prefix: 'ws_late', color: 5 }));
    await waitHistory(srv, id);
    const late = await open(`prompt_id=${id}`);
    const ok = await late.waitFor((m) => m.type === 'execution_success' && m.data.prompt_id === id,
      { timeoutMs: ms(5000), what: 'replayed execution_success' });
    const end = await late.waitDone(id, { timeoutMs: ms(5000) });
    assert.ok(end.index > ok.index, 'executing null comes after the outcome');
    // The same for a failed prompt (x.png is not an image).
    const bad = await submit(srv, {
      1: { class_type: 'LoadImage', inputs: { image: 'x.png' } },
      2: { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
    });
    await waitHistory(srv, bad.prompt_id);
    const late2 = await open(`prompt_id=${bad.prompt_id}&clientId=late2`);
    await late2.waitFor((m) => m.type === 'execution_error' && m.data.prompt_id === bad.prompt_id,
      { timeoutMs: ms(5000), what: 'replayed execution_error' });
    await late2.waitDone(bad.prompt_id, { timeoutMs: ms(5000) });
  });

  test('framing: ping/pong, fragmented first frame, oversized message closes 1009, close handshake', async () => {
    const c = await open('clientId=frames');
    await c.waitFor((m) => m.type === 'status');
    const pong = new Promise((r) => c.ws.once('pong', (d) => r(d.toString())));
    c.ws.ping('hello');
    assert.equal(await Promise.race([pong, sleep(ms(5000)).then(() => 'no pong')]), 'hello');

    const f = await open('clientId=frag');
    await f.waitFor((m) => m.type === 'status');
    const text = JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } });
    f.ws.send(text.slice(0, 10), { fin: false });
    f.ws.send(text.slice(10, 20), { fin: false });
    f.ws.send(text.slice(20), { fin: true });
    await f.waitFor((m) => m.type === 'feature_flags', { timeoutMs: ms(5000), what: 'feature_flags after a fragmented frame' });

    const big = await open('clientId=big');
    await big.waitFor((m) => m.type === 'status');
    big.ws.send(Buffer.alloc(2 * 1024 * 1024, 0x61).toString());
    const closed = await big.waitClose(ms(10000));
    assert.equal(closed.code, 1009, `oversized message -> 1009, got ${closed.code}`);

    const d = await open('clientId=bye');
    await d.waitFor((m) => m.type === 'status');
    d.ws.close(1000, 'done');
    const cl = await d.waitClose(ms(5000));
    assert.equal(cl.code, 1000);

    // The server is still fine.
    const s = await get(srv, '/system_stats');
    assert.equal(s.status, 200);
  });

  test('shuts down cleanly with sockets open (exit 0)', async () => {
    await waitIdle(srv);
    const c = await open('clientId=at-exit');
    await c.waitFor((m) => m.type === 'status');
    const s = srv;
    srv = null;
    await assertCleanStop(assert, s);
    const cl = await c.waitClose(ms(5000));
    assert.equal(cl.code, 1001, 'sockets get a 1001 "going away" close');
  });
});
