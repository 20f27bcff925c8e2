// Isolation between two users (issue 4, "Isolation"): alice and bob (role user) each see only
// their own queue entries, history, outputs, uploads and WebSocket events -- even when bob's
// socket uses alice's clientId -- and cannot cancel, interrupt or delete alice's things; an
// admin (scopes "any") sees everything. Workflows are private by default and readable by
// others only through a share (named user, role, public) or a share link, never writable.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startAuthServer, assertCleanStop, hreq, hget, hpost, errType, show, makeUser, ms, sleep,
  wsConnect, waitHistoryAs, submitAs,
} from './auth_helpers.mjs';
import { invertPrompt, slowPrompt, makePng, form } from './helpers.mjs';

const CID = 'shared-client-id-1';
const PNG_ALICE = makePng(2, 2, [255, 0, 0]);
const PNG_BOB = makePng(2, 2, [0, 0, 255]);

const queueIds = (q) => [...(q.queue_running || []), ...(q.queue_pending || [])].map((it) => it[1]);
const viewUrl = (f) => `/view?filename=${encodeURIComponent(f.filename)}&subfolder=${encodeURIComponent(f.subfolder || '')}&type=${f.type}`;

describe('auth isolation: prompts, files and events', { timeout: ms(300000) }, () => {
  let srv;
  let alice;
  let bob;
  let admin;
  let editor;
  let wsA;
  let wsB;
  let wsB2;
  let slowId;
  let pendId;
  let fastId;
  before(async () => {
    srv = await startAuthServer();
    admin = srv.adminKey;
    alice = await makeUser(srv, 'alice', 'user');
    bob = await makeUser(srv, 'bob', 'user');
    editor = await makeUser(srv, 'i_editor', 'editor');
    wsA = await wsConnect(srv, { key: alice.key, query: `clientId=${CID}` });
    wsB = await wsConnect(srv, { key: bob.key, query: `clientId=${CID}` });
    await wsA.waitFor((m) => m.type === 'status', { what: 'alice status' });
    await wsB.waitFor((m) => m.type === 'status', { what: 'bob status' });
  });
  after(async () => {
    for (const w of [wsA, wsB, wsB2]) if (w) w.close();
    if (srv) await assertCleanStop(assert, srv);
  });

  test('queue: bob sees none of alice\'s entries and cannot cancel, interrupt or clear them', async () => {
    slowId = (await submitAs(srv, alice.key, slowPrompt({ prefix: 'iso_slow' }), { client_id: CID })).prompt_id;
    pendId = (await submitAs(srv, alice.key, invertPrompt({ prefix: 'iso_pend' }), { client_id: CID })).prompt_id;
    const qa = await hget(srv, '/queue', { key: alice.key });
    assert.equal(qa.status, 200, show(qa));
    assert.ok(queueIds(qa.json).includes(slowId) && queueIds(qa.json).includes(pendId), `alice sees her entries: ${qa.text.slice(0, 300)}`);
    const qb = await hget(srv, '/queue', { key: bob.key });
    assert.equal(qb.status, 200, show(qb));
    assert.deepEqual(queueIds(qb.json), [], `bob's queue: ${qb.text.slice(0, 300)}`);
    assert.ok(!qb.text.includes(slowId) && !qb.text.includes('iso_slow'), 'nothing of alice\'s prompt in bob\'s /queue');
    for (const k of [admin, editor.key]) {
      const q = await hget(srv, '/queue', { key: k });
      assert.ok(queueIds(q.json).includes(slowId), `queue:read:any sees alice's entries: ${q.text.slice(0, 200)}`);
    }
    assert.ok(!qa.text.includes(alice.key) && !qa.text.includes(alice.key.split('_')[2]), 'no key in /queue');
    // Bob tries to remove, clear and interrupt.
    let r = await hpost(srv, '/queue', { delete: [pendId, slowId] }, { key: bob.key });
    assert.ok([200, 403, 404].includes(r.status), show(r));
    r = await hpost(srv, '/queue', { clear: true }, { key: bob.key });
    assert.ok([200, 403].includes(r.status), show(r));
    r = await hpost(srv, '/interrupt', { prompt_id: slowId }, { key: bob.key });
    assert.ok([200, 403, 404].includes(r.status), show(r));
    r = await hpost(srv, '/interrupt', {}, { key: bob.key });
    assert.ok([200, 403].includes(r.status), show(r));
    const qa2 = await hget(srv, '/queue', { key: alice.key });
    assert.ok(queueIds(qa2.json).includes(pendId), `alice's pending prompt survives bob's delete/clear: ${qa2.text.slice(0, 300)}`);
    // Both prompts finish: bob's interrupts did not reach alice's running prompt.
    const hs = await waitHistoryAs(srv, alice.key, slowId, ms(180000));
    assert.equal(hs.status.status_str, 'success', `alice's slow prompt after bob's interrupts: ${JSON.stringify(hs.status)}`);
    const hp = await waitHistoryAs(srv, alice.key, pendId, ms(60000));
    assert.equal(hp.status.status_str, 'success');
  });

  test('WebSocket: bob\'s socket with alice\'s clientId gets none of alice\'s events', async () => {
    wsB2 = await wsConnect(srv, { key: bob.key, query: `clientId=${CID}` });
    const fromB = wsB.messages.length;
    const fromB2 = wsB2.messages.length;
    const fromA = wsA.messages.length;
    fastId = (await submitAs(srv, alice.key, invertPrompt({ prefix: 'iso_fast' }), { client_id: CID })).prompt_id;
    await wsA.waitDone(fastId, { from: fromA });
    // And bob watching alice's prompt by id learns nothing.
    let wsW = null;
    try {
      wsW = await wsConnect(srv, { key: bob.key, query: `clientId=bobwatch&prompt_id=${fastId}` });
    } catch (e) {
      assert.ok(e.status === 403 || e.status === 404, `watching someone else's prompt: ${e.message}`);
    }
    await sleep(ms(800));
    const leaks = (c, from) => c.messages.slice(from).filter((m) => m.type === '<binary>' ||
      (m.data && [slowId, pendId, fastId].includes(m.data.prompt_id)) || /^(execution_|executing|executed|progress)/.test(m.type));
    assert.deepEqual(leaks(wsB, 0).map((m) => m.type), [], 'bob (same clientId) received alice\'s events');
    assert.deepEqual(leaks(wsB2, fromB2).map((m) => m.type), [], 'bob\'s second socket received alice\'s events');
    if (wsW) {
      assert.deepEqual(leaks(wsW, 0).map((m) => m.type), [], 'bob watching alice\'s prompt id received its events');
      wsW.close();
    }
    assert.ok(fromB >= 1);
    const mine = wsA.forPrompt(fastId).map((m) => m.type);
    for (const t of ['execution_start', 'executing', 'executed', 'execution_success']) {
      assert.ok(mine.includes(t), `alice got ${t}: ${mine}`);
    }
  });

  test('history: bob sees none of alice\'s entries and cannot delete them', async () => {
    const hb = await hget(srv, '/history', { key: bob.key });
    assert.equal(hb.status, 200, show(hb));
    assert.deepEqual(Object.keys(hb.json), [], `bob's history: ${hb.text.slice(0, 200)}`);
    for (const id of [slowId, fastId]) {
      const one = await hget(srv, `/history/${id}`, { key: bob.key });
      assert.ok(one.status === 404 || (one.status === 200 && Object.keys(one.json).length === 0), `bob GET /history/${id}: ${show(one)}`);
    }
    const ha = await hget(srv, '/history', { key: alice.key });
    assert.ok(ha.json[fastId] && ha.json[slowId], 'alice sees her history');
    const hadm = await hget(srv, `/history/${fastId}`, { key: admin });
    assert.ok(hadm.json && hadm.json[fastId], `history:read:any: ${show(hadm)}`);
    await hpost(srv, '/history', { delete: [fastId] }, { key: bob.key });
    await hpost(srv, '/history', { clear: true }, { key: bob.key });
    const ha2 = await hget(srv, `/history/${fastId}`, { key: alice.key });
    assert.ok(ha2.json && ha2.json[fastId], `alice's entry survives bob's delete/clear: ${show(ha2)}`);
    assert.ok(!ha.text.includes(alice.key.split('_')[2]), 'no key in /history');
  });

  test('/view: alice\'s output is 404 for bob, 200 for alice and for outputs:read:any', async () => {
    const h = (await hget(srv, `/history/${fastId}`, { key: alice.key })).json[fastId];
    const files = Object.values(h.outputs).flatMap((o) => o.images || []);
    assert.ok(files.length >= 1, `alice's prompt produced a file: ${JSON.stringify(h.outputs)}`);
    for (const f of files) {
      const a = await hget(srv, viewUrl(f), { key: alice.key });
      assert.equal(a.status, 200, `alice ${viewUrl(f)}: ${a.status}`);
      const b = await hget(srv, viewUrl(f), { key: bob.key });
      assert.equal(b.status, 404, `bob ${viewUrl(f)}: ${show(b)}`);
      const b2 = await hget(srv, '/api' + viewUrl(f), { key: bob.key });
      assert.equal(b2.status, 404, `bob /api${viewUrl(f)}: ${b2.status}`);
      const ad = await hget(srv, viewUrl(f), { key: admin });
      assert.equal(ad.status, 200, `admin ${viewUrl(f)}: ${ad.status}`);
      // Same file through a path alias.
      const alias = await hget(srv, `/view?filename=${encodeURIComponent('./' + f.filename)}&subfolder=${encodeURIComponent(f.subfolder || '')}&type=${f.type}`, { key: bob.key });
      assert.ok(alias.status === 404 || alias.status === 400, `bob via ./name: ${alias.status}`);
    }
  });

  test('uploads: bob cannot see, overwrite or load alice\'s input', async () => {
    const up = await hreq(srv, 'POST', '/upload/image', { key: alice.key, body: form({}, [{ field: 'image', filename: 'iso_in.png', data: PNG_ALICE }]) });
    assert.equal(up.status, 200, show(up));
    const f = { filename: up.json.name, subfolder: up.json.subfolder, type: up.json.type || 'input' };
    const a = await hget(srv, viewUrl(f), { key: alice.key });
    assert.equal(a.status, 200);
    assert.ok(a.bytes.equals(PNG_ALICE), 'alice reads back her bytes');
    const b = await hget(srv, viewUrl(f), { key: bob.key });
    assert.equal(b.status, 404, `bob /view of alice's upload: ${show(b)}`);
    // Bob uploads the same name, even with overwrite: alice's file is untouched.
    for (const fields of [{}, { overwrite: 'true' }]) {
      const bu = await hreq(srv, 'POST', '/upload/image', { key: bob.key, body: form(fields, [{ field: 'image', filename: 'iso_in.png', data: PNG_BOB }]) });
      assert.ok([200, 403, 409].includes(bu.status), `bob uploads alice's name ${JSON.stringify(fields)}: ${show(bu)}`);
      const again = await hget(srv, viewUrl(f), { key: alice.key });
      assert.equal(again.status, 200);
      assert.ok(again.bytes.equals(PNG_ALICE), `alice's upload unchanged after bob's ${JSON.stringify(fields)} upload of the same name (bob got ${bu.text})`);
      if (bu.status === 200) {
        const mine = await hget(srv, viewUrl({ filename: bu.json.name, subfolder: bu.json.subfolder, type: bu.json.type || 'input' }), { key: bob.key });
        assert.equal(mine.status, 200, 'bob reads his own upload');
        assert.ok(mine.bytes.equals(PNG_BOB), 'bob\'s upload holds bob\'s bytes');
      }
    }
    // Bob's mask upload naming alice's image as the original.
    const mask = await hreq(srv, 'POST', '/upload/mask', {
      key: bob.key,
      body: (() => {
        const fd = form({ original_ref: JSON.stringify({ filename: f.filename, subfolder: f.subfolder || '', type: 'input' }) },
          [{ field: 'image', filename: 'iso_mask.png', data: makePng(2, 2, [0, 0, 0, 0]) }]);
        return fd;
      })(),
    });
    assert.ok(mask.status === 404 || mask.status === 403 || mask.status === 400, `bob's mask over alice's original: ${show(mask)}`);
    // Bob's graph cannot read alice's input either.
    const lp = {
      1: { class_type: 'LoadImage', inputs: { image: f.filename } },
      2: { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'iso_steal' } },
    };
    const r = await hpost(srv, '/prompt', { prompt: lp }, { key: bob.key });
    assert.equal(r.status, 400, `bob's LoadImage of alice's upload must fail validation: ${show(r)}`);
    assert.ok(r.json.node_errors && r.json.node_errors['1'], `the error names the LoadImage node: ${show(r)}`);
    assert.equal(r.json.node_errors['1'].class_type, 'LoadImage');
    const oi = await hget(srv, '/object_info/LoadImage', { key: bob.key });
    assert.equal(oi.status, 200);
    assert.ok(!oi.text.includes('iso_in.png'), 'bob\'s /object_info/LoadImage does not list alice\'s upload');
    const oa = await hget(srv, '/object_info/LoadImage', { key: alice.key });
    assert.ok(oa.text.includes(f.filename), 'alice\'s /object_info/LoadImage lists her upload');
  });
});

describe('auth isolation: workflows', { timeout: ms(180000) }, () => {
  let srv;
  let alice;
  let bob;
  let carol; // an editor
  let viewer;
  const WF = JSON.stringify({ nodes: [], links: [], version: 0.4, extra: { who: 'alice' } });
  const path = 'workflows/a.json';
  const enc = encodeURIComponent(path);
  before(async () => {
    srv = await startAuthServer();
    alice = await makeUser(srv, 'alice', 'user');
    bob = await makeUser(srv, 'bob', 'user');
    carol = await makeUser(srv, 'carol', 'editor');
    viewer = await makeUser(srv, 'vic', 'viewer');
    const w = await hreq(srv, 'POST', `/userdata/${enc}?overwrite=true`, { key: alice.key, body: WF, headers: { 'content-type': 'application/json' } });
    assert.equal(w.status, 200, `alice saves a workflow: ${show(w)}`);
  });
  after(async () => { if (srv) await assertCleanStop(assert, srv); });

  const readShared = (key, owner = 'alice', p = path) => hget(srv, `/weft/workflows/shared/${owner}/${encodeURIComponent(p)}`, { key });
  const sharedList = async (key) => {
    const r = await hget(srv, '/weft/workflows/shared', { key });
    assert.equal(r.status, 200, show(r));
    return r;
  };
  const share = (key, body) => hpost(srv, '/weft/workflows/share', { path, ...body }, { key });

  test('private by default: bob cannot list, read or find alice\'s workflow', async () => {
    const own = await hget(srv, `/userdata/${enc}`, { key: alice.key });
    assert.equal(own.status, 200, show(own));
    assert.equal(own.text, WF);
    const b = await hget(srv, `/userdata/${enc}`, { key: bob.key });
    assert.equal(b.status, 404, `bob GET /userdata/${enc}: ${show(b)}`);
    const lb = await hget(srv, '/userdata?dir=workflows', { key: bob.key });
    assert.ok(lb.status === 200 || lb.status === 404, show(lb));
    assert.ok(!lb.text.includes('a.json'), `bob's listing: ${lb.text}`);
    const v2 = await hget(srv, '/v2/userdata?path=workflows', { key: bob.key });
    assert.ok(!v2.text.includes('a.json'), `bob's v2 listing: ${v2.text}`);
    const s = await readShared(bob.key);
    assert.ok(s.status === 404 || s.status === 403, `not shared yet: ${show(s)}`);
    assert.ok(!(await sharedList(bob.key)).text.includes('a.json'));
    // Traversal into alice's folder.
    for (const p of [`../alice/${path}`, `..%2Falice%2F${enc}`, `%2E%2E%2Falice%2F${enc}`]) {
      const t = await hget(srv, `/userdata/${p.includes('%') ? p : encodeURIComponent(p)}`, { key: bob.key });
      assert.ok(t.status === 400 || t.status === 404 || t.status === 403, `bob /userdata/${p}: ${show(t)}`);
      assert.ok(!t.text.includes('"who":"alice"'), `traversal leaked alice's workflow via ${p}`);
    }
  });

  test('a user without workflows:share cannot share', async () => {
    const r = await share(alice.key, { users: ['bob'] });
    assert.equal(r.status, 403, `role user has no workflows:share: ${show(r)}`);
  });

  test('shared with bob (by an editor\'s own workflow): bob reads it, cannot write it', async () => {
    const w = await hreq(srv, 'POST', `/userdata/${enc}?overwrite=true`, { key: carol.key, body: WF.replace('alice', 'carol'), headers: { 'content-type': 'application/json' } });
    assert.equal(w.status, 200, show(w));
    const r = await share(carol.key, { users: ['bob'] });
    assert.ok(r.status === 200 || r.status === 201, `carol shares with bob: ${show(r)}`);
    const lb = await sharedList(bob.key);
    assert.ok(lb.text.includes('carol') && lb.text.includes('a.json'), `bob's shared list: ${lb.text}`);
    const rb = await readShared(bob.key, 'carol');
    assert.equal(rb.status, 200, show(rb));
    assert.match(rb.text, /"who":\s*"carol"/);
    // Others do not see it.
    const ra = await readShared(alice.key, 'carol');
    assert.ok(ra.status === 404 || ra.status === 403, `alice (not shared with): ${show(ra)}`);
    // No way to write it.
    for (const m of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const x = await hreq(srv, m, `/weft/workflows/shared/carol/${enc}`, { key: bob.key, body: m === 'DELETE' ? undefined : '{"hacked":1}' });
      assert.ok([403, 404, 405].includes(x.status), `bob ${m} on carol's shared workflow: ${show(x)}`);
    }
    const own = await hreq(srv, 'POST', `/userdata/${enc}?overwrite=true`, { key: bob.key, body: '{"bob":1}', headers: { 'content-type': 'application/json' } });
    assert.equal(own.status, 200, `bob saves his own a.json: ${show(own)}`);
    const mv = await hreq(srv, 'POST', `/userdata/${enc}/move/${encodeURIComponent('../carol/' + path)}?overwrite=true`, { key: bob.key });
    assert.ok(mv.status >= 400, `bob moves onto carol's file: ${show(mv)}`);
    const still = await hget(srv, `/userdata/${enc}`, { key: carol.key });
    assert.match(still.text, /"who":\s*"carol"/, 'carol\'s workflow unchanged');
    const del = await hreq(srv, 'DELETE', `/userdata/${enc}`, { key: bob.key });
    assert.ok(del.status === 204 || del.status === 200, `bob deletes his own copy: ${show(del)}`);
    assert.equal((await hget(srv, `/userdata/${enc}`, { key: carol.key })).status, 200, 'carol\'s copy survives');
  });

  test('nobody shares what is not theirs', async () => {
    // With her own copy gone, carol (editor) names workflows/a.json, which now exists only in
    // alice's library: that path is carol's own (missing) file, never alice's.
    const d = await hreq(srv, 'DELETE', `/userdata/${enc}`, { key: carol.key });
    assert.ok(d.status === 204 || d.status === 200, show(d));
    const r = await hpost(srv, '/weft/workflows/share', { path, public: true }, { key: carol.key });
    assert.equal(r.status, 404, `sharing a file one does not have: ${show(r)}`);
    for (const p of ['../alice/workflows/a.json', '/etc/passwd', 'workflows/../../alice/workflows/a.json']) {
      const x = await hpost(srv, '/weft/workflows/share', { path: p, public: true }, { key: carol.key });
      assert.ok(x.status === 400 || x.status === 404, `share ${p}: ${show(x)}`);
    }
    for (const p of [path, '../alice/workflows/a.json']) {
      const l = await hpost(srv, '/weft/share_links', { path: p }, { key: carol.key });
      assert.ok(l.status === 400 || l.status === 404, `link to ${p}: ${show(l)}`);
    }
    assert.ok(!(await sharedList(bob.key)).text.includes('alice'), 'nothing of alice\'s got shared');
    const w = await hreq(srv, 'POST', `/userdata/${enc}?overwrite=true`, { key: carol.key, body: WF.replace('alice', 'carol'), headers: { 'content-type': 'application/json' } });
    assert.equal(w.status, 200, show(w));
  });

  test('shared with a role, public, and unshared', async () => {
    let r = await share(carol.key, { users: [], roles: ['viewer'] });
    assert.ok(r.status === 200 || r.status === 201, show(r));
    assert.equal((await readShared(viewer.key, 'carol')).status, 200, 'a viewer reads a workflow shared with role viewer');
    const ab = await readShared(alice.key, 'carol');
    assert.ok(ab.status === 404 || ab.status === 403, `role user not granted: ${show(ab)}`);
    r = await share(carol.key, { users: [], roles: [], public: true });
    assert.ok(r.status === 200 || r.status === 201, show(r));
    assert.equal((await readShared(alice.key, 'carol')).status, 200, 'public-read: any user');
    assert.ok((await sharedList(alice.key)).text.includes('carol'));
    // Grants are replaced, not added to: public off, bob only.
    r = await share(carol.key, { users: ['bob'], roles: [], public: false });
    assert.ok(r.status === 200 || r.status === 201, show(r));
    assert.equal((await readShared(bob.key, 'carol')).status, 200);
    for (const k of [alice.key, viewer.key]) {
      const x = await readShared(k, 'carol');
      assert.ok(x.status === 404 || x.status === 403, `after narrowing the grants: ${show(x)}`);
    }
    // Unshare: DELETE /weft/workflows/share?path=P.
    r = await hreq(srv, 'DELETE', `/weft/workflows/share?path=${enc}`, { key: carol.key });
    assert.ok(r.status === 200 || r.status === 204, show(r));
    assert.ok(!(await sharedList(bob.key)).text.includes('carol'), 'nothing shared with bob any more');
    for (const k of [alice.key, bob.key, viewer.key]) {
      const x = await readShared(k, 'carol');
      assert.ok(x.status === 404 || x.status === 403, `after unsharing: ${show(x)}`);
    }
    // Public-read still needs an account.
    const anon = await hget(srv, `/weft/workflows/shared/carol/${enc}`);
    assert.equal(anon.status, 401);
  });

  test('share link: readable without an account, then revoked → 404', async () => {
    const r = await hpost(srv, '/weft/share_links', { path }, { key: carol.key });
    assert.ok(r.status === 200 || r.status === 201, `carol creates a share link: ${show(r)}`);
    const token = r.json.token;
    const id = r.json.id;
    assert.ok(typeof token === 'string' && token.length >= 20, show(r));
    const anon = await hget(srv, `/share/${token}`);
    assert.equal(anon.status, 200, show(anon));
    assert.match(anon.text, /"who":\s*"carol"/);
    const wrong = await hget(srv, `/share/${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`);
    assert.equal(wrong.status, 404);
    const list = await hget(srv, '/weft/share_links', { key: carol.key });
    assert.equal(list.status, 200, show(list));
    assert.ok(list.text.includes(id), 'the link is listed by id');
    const other = await hreq(srv, 'DELETE', `/weft/share_links/${id}`, { key: bob.key });
    assert.ok(other.status === 403 || other.status === 404, `bob revokes carol's link: ${show(other)}`);
    assert.equal((await hget(srv, `/share/${token}`)).status, 200, 'still live');
    const rv = await hreq(srv, 'DELETE', `/weft/share_links/${id}`, { key: carol.key });
    assert.ok(rv.status === 200 || rv.status === 204, `carol revokes: ${show(rv)}`);
    const gone = await hget(srv, `/share/${token}`);
    assert.equal(gone.status, 404, show(gone));
    // An expiring link.
    const e = await hpost(srv, '/weft/share_links', { path, expires_in: 1 }, { key: carol.key });
    assert.ok(e.status === 200 || e.status === 201, show(e));
    assert.equal((await hget(srv, `/share/${e.json.token}`)).status, 200);
    await sleep(2200);
    assert.equal((await hget(srv, `/share/${e.json.token}`)).status, 404, 'expired link');
    // A link to an output file: carol's own output only.
    const pr = await hpost(srv, '/prompt', { prompt: invertPrompt({ prefix: 'iso_link' }) }, { key: carol.key });
    assert.equal(pr.status, 200, show(pr));
    const h = await waitHistoryAs(srv, carol.key, pr.json.prompt_id);
    const img = Object.values(h.outputs).flatMap((o) => o.images || [])[0];
    const ol = await hpost(srv, '/weft/share_links', { kind: 'output', folder: 'output', path: (img.subfolder ? img.subfolder + '/' : '') + img.filename }, { key: carol.key });
    assert.equal(ol.status, 201, `output link: ${show(ol)}`);
    const oa = await hget(srv, `/share/${ol.json.token}`);
    assert.equal(oa.status, 200, show(oa));
    assert.ok(oa.bytes.subarray(0, 4).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47])), 'the PNG');
    assert.equal(oa.headers['x-content-type-options'], 'nosniff');
    const aprompt = await hpost(srv, '/prompt', { prompt: invertPrompt({ prefix: 'iso_alice_out' }) }, { key: alice.key });
    const ah = await waitHistoryAs(srv, alice.key, aprompt.json.prompt_id);
    const aimg = Object.values(ah.outputs).flatMap((o) => o.images || [])[0];
    const steal = await hpost(srv, '/weft/share_links', { kind: 'output', folder: 'output', path: aimg.filename }, { key: carol.key });
    assert.equal(steal.status, 404, `carol linking alice's output: ${show(steal)}`);
    // A user (no workflows:share) cannot make links.
    const u = await hpost(srv, '/weft/share_links', { path }, { key: alice.key });
    assert.equal(u.status, 403, show(u));
  });
});
