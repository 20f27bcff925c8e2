// Lanes and fair scheduling (issue 8) against the real `weft serve` with authentication:
// --lanes validation; with --lanes 2 two users' prompts run at the same time, each user's
// socket sees its own prompt's events in ComfyUI order, and an interrupt without a prompt id
// stops only the caller's prompt (an admin's stops both); with one lane, the queue is listed
// and run round-robin across users.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startAuthServer, assertCleanStop, hget, hpost, show, makeUser, ms, sleep, wsConnect, waitHistoryAs, submitAs,
} from './auth_helpers.mjs';
import { invertPrompt, slowPrompt } from './helpers.mjs';

const ids = (list) => (list || []).map((it) => it[1]);
const SLOW = { size: 256, steps: 8, batch: 4 };

/** Polls /queue (as key) until pred(json) holds; resolves the json. */
async function waitQueue(srv, key, pred, what, timeoutMs = ms(60000)) {
  const deadline = performance.now() + timeoutMs;
  let last;
  for (;;) {
    last = await hget(srv, '/queue', { key });
    if (last.status === 200 && pred(last.json)) return last.json;
    if (performance.now() > deadline) throw new Error(`timeout waiting for ${what}: ${show(last)}`);
    await sleep(last.status === 429 ? 500 : 30);
  }
}

/** Timestamp of a lifecycle message in a history entry. */
function stamp(entry, type) {
  const m = entry.status.messages.find((x) => x[0] === type);
  assert.ok(m, `${type} in ${JSON.stringify(entry.status.messages).slice(0, 300)}`);
  return m[1].timestamp;
}

describe('weft serve --lanes: validation', { timeout: ms(60000) }, () => {
  for (const [args, msg] of [
    [['--lanes', '0'], /--lanes needs a number from 1 to 64 \(got '0'\)/],
    [['--lanes', 'two'], /--lanes needs a number from 1 to 64/],
    [['--lanes=65'], /--lanes needs a number from 1 to 64/],
    [['--lanes-heavy', '-1'], /--lanes-heavy needs a number from 0 to 64/],
  ]) {
    test(`refuses ${args.join(' ')}`, async () => {
      const r = await startAuthServer({ args, expectExit: true });
      assert.ok(r.exitedEarly, 'the server must not start');
      assert.equal(r.code, 2);
      assert.match(r.stderr, msg);
    });
  }
});

describe('weft serve --lanes 2: two users at once', { timeout: ms(300000) }, () => {
  let srv;
  let alice;
  let bob;
  let wsA;
  let wsB;
  before(async () => {
    srv = await startAuthServer({ args: ['--lanes', '2'] });
    alice = await makeUser(srv, 'l_alice', 'user');
    bob = await makeUser(srv, 'l_bob', 'user');
    wsA = await wsConnect(srv, { key: alice.key, query: 'clientId=lanes-a' });
    wsB = await wsConnect(srv, { key: bob.key, query: 'clientId=lanes-b' });
  });
  after(async () => {
    for (const w of [wsA, wsB]) if (w) w.close();
    if (srv) await assertCleanStop(assert, srv);
  });

  test('prompts of two users run concurrently, events per prompt in order', async () => {
    const a = (await submitAs(srv, alice.key, slowPrompt({ prefix: 'lane_a', ...SLOW }), { client_id: 'lanes-a' })).prompt_id;
    const b = (await submitAs(srv, bob.key, slowPrompt({ prefix: 'lane_b', color: 7, ...SLOW }), { client_id: 'lanes-b' })).prompt_id;
    const q = await waitQueue(srv, srv.adminKey, (j) => ids(j.queue_running).length === 2, 'both prompts running');
    assert.deepEqual(ids(q.queue_running).sort(), [a, b].sort());
    assert.deepEqual(ids(q.queue_pending), []);
    // Each user still sees only their own running prompt.
    const qa = await hget(srv, '/queue', { key: alice.key });
    assert.deepEqual(ids(qa.json.queue_running), [a], show(qa));
    const ha = await waitHistoryAs(srv, alice.key, a, ms(180000));
    const hb = await waitHistoryAs(srv, bob.key, b, ms(180000));
    assert.equal(ha.status.status_str, 'success', JSON.stringify(ha.status).slice(0, 400));
    assert.equal(hb.status.status_str, 'success', JSON.stringify(hb.status).slice(0, 400));
    // They overlapped: each started before the other finished.
    assert.ok(stamp(ha, 'execution_start') <= stamp(hb, 'execution_success'));
    assert.ok(stamp(hb, 'execution_start') <= stamp(ha, 'execution_success'));
    for (const [ws, id, other] of [[wsA, a, b], [wsB, b, a]]) {
      await ws.waitDone(id, { timeoutMs: ms(30000) });
      const evs = ws.forPrompt(id).map((m) => m.type + (m.data.node !== undefined ? ':' + m.data.node : ''));
      assert.equal(evs[0], 'execution_start', evs.join(' '));
      assert.equal(evs[1], 'execution_cached', evs.join(' '));
      const success = evs.indexOf('execution_success');
      assert.ok(success > 1 && evs.slice(success + 1).every((e) => e === 'executing:null'), evs.join(' '));
      for (const node of ['1', '2', '99']) {
        const ex = evs.indexOf(`executing:${node}`);
        assert.ok(ex > 1 && ex < success, `executing ${node}: ${evs.join(' ')}`);
      }
      assert.ok(evs.indexOf('executed:99') > evs.indexOf('executing:99'), evs.join(' '));
      assert.equal(ws.forPrompt(other).length, 0, 'no events of the other user\'s prompt');
    }
    assert.equal(ha.outputs['99'].images.length, 4);
    assert.equal(hb.outputs['99'].images.length, 4);
  });

  test('an interrupt without a prompt id stops only the caller\'s prompt; an admin\'s stops all', async () => {
    const a = (await submitAs(srv, alice.key, slowPrompt({ prefix: 'lane_ia', color: 3, ...SLOW, steps: 40 }))).prompt_id;
    const b = (await submitAs(srv, bob.key, slowPrompt({ prefix: 'lane_ib', color: 4, ...SLOW, steps: 12 }))).prompt_id;
    await waitQueue(srv, srv.adminKey, (j) => ids(j.queue_running).length === 2, 'both prompts running');
    let r = await hpost(srv, '/interrupt', {}, { key: alice.key });
    assert.equal(r.status, 200, show(r));
    const ha = await waitHistoryAs(srv, alice.key, a, ms(120000));
    assert.equal(ha.status.status_str, 'error');
    assert.ok(ha.status.messages.some((m) => m[0] === 'execution_interrupted'), JSON.stringify(ha.status.messages).slice(0, 300));
    const hb = await waitHistoryAs(srv, bob.key, b, ms(180000));
    assert.equal(hb.status.status_str, 'success', 'bob\'s prompt is not alice\'s to stop');

    const a2 = (await submitAs(srv, alice.key, slowPrompt({ prefix: 'lane_ja', color: 5, ...SLOW, steps: 40 }))).prompt_id;
    const b2 = (await submitAs(srv, bob.key, slowPrompt({ prefix: 'lane_jb', color: 6, ...SLOW, steps: 40 }))).prompt_id;
    await waitQueue(srv, srv.adminKey, (j) => ids(j.queue_running).length === 2, 'both prompts running');
    r = await hpost(srv, '/interrupt', {}, { key: srv.adminKey });
    assert.equal(r.status, 200, show(r));
    for (const [key, id] of [[alice.key, a2], [bob.key, b2]]) {
      const h = await waitHistoryAs(srv, key, id, ms(120000));
      assert.equal(h.status.status_str, 'error', JSON.stringify(h.status).slice(0, 300));
      assert.ok(h.status.messages.some((m) => m[0] === 'execution_interrupted'));
    }
  });
});

describe('fair order across users (one lane)', { timeout: ms(300000) }, () => {
  let srv;
  let alice;
  let bob;
  before(async () => {
    srv = await startAuthServer({ args: ['--lanes', '1'] });
    alice = await makeUser(srv, 'f_alice', 'editor');
    bob = await makeUser(srv, 'f_bob', 'editor');
  });
  after(async () => {
    if (srv) await assertCleanStop(assert, srv);
  });

  test('a batch does not starve another user\'s prompt; /queue lists the start order', async () => {
    const slow = (await submitAs(srv, alice.key, slowPrompt({ prefix: 'fair_slow', ...SLOW, steps: 16 }))).prompt_id;
    await waitQueue(srv, srv.adminKey, (j) => ids(j.queue_running).includes(slow), 'alice\'s slow prompt running');
    const batch = [];
    for (let i = 0; i < 4; i++) batch.push((await submitAs(srv, alice.key, invertPrompt({ prefix: `fair_a${i}`, color: i }))).prompt_id);
    const single = (await submitAs(srv, bob.key, invertPrompt({ prefix: 'fair_b', color: 9 }))).prompt_id;
    const front = (await submitAs(srv, alice.key, invertPrompt({ prefix: 'fair_af', color: 11 }), { front: true })).prompt_id;
    const q = await hget(srv, '/queue', { key: srv.adminKey });
    assert.equal(q.status, 200, show(q));
    assert.deepEqual(ids(q.json.queue_running), [slow], 'the slow prompt outlasts the submissions');
    // Alice just had her turn: bob's single prompt is next, then alice's, `front` first.
    assert.deepEqual(ids(q.json.queue_pending), [single, front, ...batch]);
    const entries = {};
    for (const id of [slow, single, front, ...batch]) {
      const key = id === single ? bob.key : alice.key;
      entries[id] = await waitHistoryAs(srv, key, id, ms(180000));
      assert.equal(entries[id].status.status_str, 'success');
    }
    const order = [single, front, ...batch];
    for (let i = 1; i < order.length; i++) {
      assert.ok(stamp(entries[order[i - 1]], 'execution_success') <= stamp(entries[order[i]], 'execution_start'),
        `${i - 1} finished before ${i} started`);
    }
    assert.ok(stamp(entries[slow], 'execution_success') <= stamp(entries[single], 'execution_start'));
  });
});
