// Durability of the queue and history: kill -9 while a prompt runs with 5 more queued, then
// restart on the same base dir -- the 5 complete exactly once, the killed one is reported as
// failed, nothing stays pending. Graceful shutdown on SIGTERM, idle and while a prompt runs.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer, get, WsClient, invertPrompt, slowPrompt, submit, waitHistory, waitIdle, tmpRoot,
  sleep, ms, assertCleanStop,
} from './helpers.mjs';

const outputs = (baseDir, prefix) => fs.readdirSync(path.join(baseDir, 'output')).filter((f) => f.startsWith(prefix)).sort();

describe('crash and restart', { timeout: ms(420000) }, () => {
  let root;
  let srv;
  const sockets = [];
  before(() => { root = tmpRoot(); });
  after(async () => {
    for (const c of sockets) c.close();
    if (srv) await srv.stop();
    root.cleanup();
  });

  test('kill -9 with a running prompt and 5 queued: the 5 complete exactly once after restart', async (t) => {
    const baseDir = path.join(root.dir, 'crash');
    srv = await startServer({ baseDir });
    const c = await WsClient.connect(srv, 'clientId=crash');
    sockets.push(c);
    await c.waitFor((m) => m.type === 'status');
    const slow = await submit(srv, slowPrompt({ prefix: 'crash_slow' }), { client_id: 'crash' });
    const quick = [];
    for (let i = 0; i < 5; i++) {
      quick.push(await submit(srv, invertPrompt({ prefix: `crash_q${i}`, color: 1000 + i }), { client_id: 'crash' }));
    }
    // Well into the slow prompt: its second node (the first lanczos) is executing.
    await c.waitFor((m) => m.type === 'executing' && m.data.prompt_id === slow.prompt_id && m.data.node === '2',
      { what: 'slow prompt executing node 2' });
    const q = await get(srv, '/queue');
    assert.equal(q.json.queue_running.length, 1);
    assert.equal(q.json.queue_running[0][1], slow.prompt_id);
    assert.equal(q.json.queue_pending.length, 5, 'the 5 quick prompts are pending at the kill');
    const k = await srv.kill9();
    assert.equal(k.signal, 'SIGKILL');
    c.close();
    assert.deepEqual(outputs(baseDir, 'crash_'), [], 'nothing ran to completion before the kill');

    const t0 = performance.now();
    srv = await startServer({ baseDir });
    t.diagnostic(`restart ready in ${Math.round(performance.now() - t0)} ms`);
    for (const p of quick) {
      const e = await waitHistory(srv, p.prompt_id, ms(90000));
      assert.equal(e.status.status_str, 'success', `quick prompt ${p.prompt_id}`);
      assert.equal(e.status.completed, true);
    }
    await waitIdle(srv);
    const es = (await get(srv, `/history/${slow.prompt_id}`)).json[slow.prompt_id];
    assert.ok(es, 'the killed prompt has a history entry');
    assert.equal(es.status.status_str, 'error');
    assert.equal(es.status.completed, false);
    const err = es.status.messages.find((m) => m[0] === 'execution_error');
    assert.ok(err, `an execution_error message explains the failure: ${JSON.stringify(es.status.messages)}`);
    assert.equal(err[1].prompt_id, slow.prompt_id);
    assert.equal(typeof err[1].exception_message, 'string');
    assert.ok(err[1].exception_message.length > 10, 'a clear message');
    t.diagnostic(`killed prompt reported as: ${JSON.stringify(err[1].exception_message)}`);

    const h = (await get(srv, '/history')).json;
    assert.deepEqual(Object.keys(h).sort(), [slow.prompt_id, ...quick.map((p) => p.prompt_id)].sort(),
      'history holds exactly the 6 prompts');
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(outputs(baseDir, `crash_q${i}_`), [`crash_q${i}_00001_.png`], `prompt ${i} ran exactly once`);
    }
    assert.deepEqual(outputs(baseDir, 'crash_slow'), []);
    assert.deepEqual((await get(srv, '/queue')).json, { queue_running: [], queue_pending: [] });

    // A socket asking for the killed prompt learns its outcome.
    const w = await WsClient.connect(srv, `prompt_id=${slow.prompt_id}`);
    sockets.push(w);
    await w.waitFor((m) => m.type === 'execution_error' && m.data.prompt_id === slow.prompt_id, { timeoutMs: ms(5000), what: 'replayed execution_error' });
    await w.waitDone(slow.prompt_id, { timeoutMs: ms(5000) });
    w.close();

    // One more restart: nothing runs again, nothing is pending.
    await assertCleanStop(assert, srv);
    srv = await startServer({ baseDir });
    await sleep(ms(1000));
    assert.deepEqual((await get(srv, '/queue')).json, { queue_running: [], queue_pending: [] });
    assert.equal(Object.keys((await get(srv, '/history')).json).length, 6);
    for (let i = 0; i < 5; i++) assert.equal(outputs(baseDir, `crash_q${i}_`).length, 1);
    await assertCleanStop(assert, srv);
    srv = null;
  });

  test('SIGTERM while idle exits 0 quickly', async (t) => {
    srv = await startServer({ baseDir: path.join(root.dir, 'idle') });
    const c = await WsClient.connect(srv, 'clientId=idle');
    sockets.push(c);
    await c.waitFor((m) => m.type === 'status');
    const res = await assertCleanStop(assert, srv, ms(5000));
    t.diagnostic(`idle SIGTERM -> exit in ${Math.round(res.ms)} ms`);
    assert.ok(res.ms < ms(3000), `exit took ${Math.round(res.ms)} ms`);
    srv = null;
  });

  test('SIGTERM while a prompt runs exits 0 within seconds; the prompt runs again after restart', async (t) => {
    const baseDir = path.join(root.dir, 'term');
    srv = await startServer({ baseDir });
    const c = await WsClient.connect(srv, 'clientId=term');
    sockets.push(c);
    await c.waitFor((m) => m.type === 'status');
    const slow = await submit(srv, slowPrompt({ prefix: 'term_slow' }), { client_id: 'term' });
    const after1 = await submit(srv, invertPrompt({ prefix: 'term_q', color: 31 }), { client_id: 'term' });
    await c.waitFor((m) => m.type === 'executing' && m.data.prompt_id === slow.prompt_id && m.data.node === '2',
      { what: 'slow prompt executing node 2' });
    const res = await assertCleanStop(assert, srv, ms(10000));
    t.diagnostic(`SIGTERM with a running prompt -> exit in ${Math.round(res.ms)} ms`);
    assert.ok(res.ms < ms(5000), `exit took ${Math.round(res.ms)} ms`);
    await c.waitClose(ms(5000));
    assert.deepEqual(outputs(baseDir, 'term_'), []);

    srv = await startServer({ baseDir });
    const e = await waitHistory(srv, slow.prompt_id, ms(180000));
    assert.equal(e.status.status_str, 'success', `the interrupted-by-shutdown prompt ran again: ${JSON.stringify(e.status)}`);
    const e2 = await waitHistory(srv, after1.prompt_id, ms(60000));
    assert.equal(e2.status.status_str, 'success');
    await waitIdle(srv);
    assert.equal(outputs(baseDir, 'term_slow_').length, 4, 'one file per image of the batch, written once');
    assert.deepEqual(outputs(baseDir, 'term_q_'), ['term_q_00001_.png']);
    await assertCleanStop(assert, srv);
    srv = null;
  });
});
