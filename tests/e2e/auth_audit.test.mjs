// The audit log (issue 4, "Audit"): every audited action -- login success and failure, key
// create/revoke, user create/disable/role change, prompt submit/cancel/interrupt, workflow
// share/unshare, upload -- leaves an entry with who, from where, what and on what, readable by
// an admin through GET /auth/audit and `weft audit`, and by nobody else. No secret in it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startAuthServer, assertCleanStop, hreq, hget, hpost, hdel, show, makeUser, login, freshIp,
  apiAddUser, apiCreateKey, apiDisable, apiSetRole, runWeft, auditEntries, submitAs, ms, PASSWORD,
  waitHistoryAs,
} from './auth_helpers.mjs';
import { invertPrompt, slowPrompt, makePng, form } from './helpers.mjs';

describe('auth audit log', { timeout: ms(240000) }, () => {
  let srv;
  let ed;
  const ip = freshIp();
  const expect = []; // [{what, action: RegExp, who, target: string|RegExp|null}]
  const secrets = [];
  before(async () => {
    srv = await startAuthServer();
    secrets.push(srv.adminKey);
  });
  after(async () => { if (srv) await assertCleanStop(assert, srv); });

  test('perform every audited action', async () => {
    const A = { key: srv.adminKey, from: ip };
    // users: create, role change, disable (admin, over HTTP)
    await apiAddUser(srv, 'au_editor', 'editor', PASSWORD, ip);
    expect.push({ what: 'user create', action: /user.*(create|add)|(create|add).*user/i, who: 'admin', target: /au_editor/ });
    await apiAddUser(srv, 'au_victim', 'user', PASSWORD, ip);
    await apiSetRole(srv, 'au_victim', 'viewer', ip);
    expect.push({ what: 'user role change', action: /role/i, who: 'admin', target: /au_victim/ });
    // keys: create (HTTP), revoke
    const k = await apiCreateKey(srv, 'au_editor', { from: ip });
    ed = { key: k.key, id: k.id };
    secrets.push(k.key);
    expect.push({ what: 'key create', action: /key.*create|create.*key/i, who: 'admin', target: new RegExp(k.id) });
    const k2 = await apiCreateKey(srv, 'au_editor', { from: ip });
    secrets.push(k2.key);
    const d = await hdel(srv, `/auth/keys/${k2.id}`, A);
    assert.ok(d.status === 200 || d.status === 204, show(d));
    expect.push({ what: 'key revoke', action: /key.*revoke|revoke.*key/i, who: 'admin', target: new RegExp(k2.id) });
    await apiDisable(srv, 'au_victim', ip);
    expect.push({ what: 'user disable', action: /disable/i, who: 'admin', target: /au_victim/ });
    // logins
    const l = await login(srv, 'au_editor', PASSWORD, { from: ip });
    secrets.push(l.cookie.split('=')[1], l.csrf);
    expect.push({ what: 'login success', action: /login(?!.*fail)/i, who: 'au_editor', target: null, notFail: true });
    const bad = await hreq(srv, 'POST', '/auth/login', { body: { username: 'au_editor', password: 'not the password' }, from: ip });
    assert.equal(bad.status, 401);
    expect.push({ what: 'login failure', action: /login.*fail|fail.*login/i, who: null, target: /au_editor/, whoOrTarget: 'au_editor' });
    // prompts: submit, cancel (pending), interrupt (running)
    const E = { key: ed.key, from: ip };
    const slow = (await submitAs(srv, ed.key, slowPrompt({ prefix: 'au_slow' }), {}, ip)).prompt_id;
    expect.push({ what: 'prompt submit', action: /prompt.*submit|submit/i, who: 'au_editor', target: new RegExp(slow) });
    const pend = (await submitAs(srv, ed.key, invertPrompt({ prefix: 'au_pend' }), {}, ip)).prompt_id;
    let r = await hpost(srv, '/queue', { delete: [pend] }, E);
    assert.equal(r.status, 200, show(r));
    expect.push({ what: 'prompt cancel', action: /cancel|queue.*delete/i, who: 'au_editor', target: new RegExp(pend) });
    r = await hpost(srv, '/interrupt', { prompt_id: slow }, E);
    assert.equal(r.status, 200, show(r));
    expect.push({ what: 'prompt interrupt', action: /interrupt/i, who: 'au_editor', target: new RegExp(slow) });
    await waitHistoryAs(srv, ed.key, slow, ms(120000));
    // upload
    r = await hreq(srv, 'POST', '/upload/image', { ...E, body: form({}, [{ field: 'image', filename: 'au_up.png', data: makePng(2, 2, [1, 2, 3]) }]) });
    assert.equal(r.status, 200, show(r));
    expect.push({ what: 'upload', action: /upload/i, who: 'au_editor', target: /au_up\.png/ });
    // workflow share / unshare
    r = await hreq(srv, 'POST', `/userdata/${encodeURIComponent('workflows/au.json')}?overwrite=true`, { ...E, body: '{"nodes":[]}', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 200, show(r));
    r = await hpost(srv, '/weft/workflows/share', { path: 'workflows/au.json', users: ['au_victim'] }, E);
    assert.ok(r.status === 200 || r.status === 201, show(r));
    expect.push({ what: 'workflow share', action: /^(?!.*unshare).*share(?!_link)/i, who: 'au_editor', target: /au\.json/ });
    r = await hreq(srv, 'DELETE', `/weft/workflows/share?path=${encodeURIComponent('workflows/au.json')}`, E);
    assert.ok(r.status === 200 || r.status === 204, show(r));
    expect.push({ what: 'workflow unshare', action: /unshare/i, who: 'au_editor', target: /au\.json/ });
    // share link create / revoke
    r = await hpost(srv, '/weft/share_links', { path: 'workflows/au.json' }, E);
    assert.equal(r.status, 201, show(r));
    secrets.push(r.json.token);
    expect.push({ what: 'share link create', action: /link.*create|create.*link/i, who: 'au_editor', target: new RegExp(r.json.id) });
    const lr = await hreq(srv, 'DELETE', `/weft/share_links/${r.json.id}`, E);
    assert.ok(lr.status === 200 || lr.status === 204, show(lr));
    expect.push({ what: 'share link revoke', action: /link.*revoke|revoke.*link/i, who: 'au_editor', target: new RegExp(r.json.id) });
    r = await hreq(srv, 'DELETE', `/userdata/${encodeURIComponent('workflows/au.json')}`, E);
    assert.ok(r.status === 200 || r.status === 204, show(r));
    expect.push({ what: 'workflow delete', action: /delete/i, who: 'au_editor', target: /au\.json/ });
  });

  /** Finds the entry for each expectation; returns the list of misses. */
  function check(entries, where) {
    const miss = [];
    const used = new Set();
    for (const e of expect) {
      const hits = entries.filter((x) => {
        if (!e.action.test(String(x.action))) return false;
        if (e.notFail && /fail/i.test(String(x.action))) return false;
        if (e.target && !e.target.test(String(x.target ?? '') + ' ' + JSON.stringify(x.detail ?? ''))) return false;
        if (e.who && x.who !== e.who) return false;
        if (e.whoOrTarget && x.who !== e.whoOrTarget && !String(x.target ?? '').includes(e.whoOrTarget) &&
          !JSON.stringify(x.detail ?? '').includes(e.whoOrTarget)) return false;
        return true;
      });
      const fresh = hits.filter((x) => !used.has(x));
      const hit = e.nth ? (hits.length >= e.nth ? hits[hits.length - e.nth] : undefined) : fresh[fresh.length - 1];
      if (!hit) {
        miss.push(`${where}: no entry for ${e.what} (action ${e.action}, who ${e.who}, target ${e.target})`);
        continue;
      }
      used.add(hit);
      if (hit.ip !== undefined && hit.ip !== ip) miss.push(`${where}: ${e.what}: ip ${JSON.stringify(hit.ip)}, want ${ip}`);
      if (!hit.time) miss.push(`${where}: ${e.what}: no time`);
    }
    return miss;
  }

  test('GET /auth/audit (admin) has an entry for each, with who, ip, action, target', async () => {
    const r = await hget(srv, '/auth/audit?limit=1000', { key: srv.adminKey });
    assert.equal(r.status, 200, show(r));
    const entries = auditEntries(r.json);
    assert.ok(entries.length >= expect.length, `${entries.length} entries: ${r.text.slice(0, 500)}`);
    for (const x of entries.slice(0, 3)) {
      for (const f of ['id', 'time', 'who', 'ip', 'action', 'target']) assert.ok(f in x, `entry has ${f}: ${JSON.stringify(x)}`);
    }
    const miss = check(entries, 'GET /auth/audit');
    assert.deepEqual(miss, [], `${miss.join('\n')}\nactions seen: ${JSON.stringify(entries.map((x) => [x.action, x.who, x.target]))}`);
    for (const s of secrets) assert.ok(!r.text.includes(s), 'no key, session token or CSRF token in the audit log');
    assert.ok(!r.text.includes(PASSWORD) && !r.text.includes('not the password'), 'no password in the audit log');
    // Newest first.
    const ids = entries.map((x) => Number(x.id));
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first');
  });

  test('the audit log is admin-only and append-only', async () => {
    const r = await hget(srv, '/auth/audit', { key: ed.key });
    assert.equal(r.status, 403, show(r));
    const n = await hget(srv, '/auth/audit', { from: freshIp() });
    assert.equal(n.status, 401, show(n));
    for (const m of ['DELETE', 'POST', 'PUT', 'PATCH']) {
      const x = await hreq(srv, m, '/auth/audit', { key: srv.adminKey, body: m === 'DELETE' ? undefined : {} });
      assert.ok(x.status === 404 || x.status === 405, `${m} /auth/audit: ${show(x)}`);
    }
  });

  test('`weft audit` shows the same entries (JSON lines, newest first)', async () => {
    const r = await runWeft(['audit', '--limit', '1000', '--base-dir', srv.baseDir]);
    assert.equal(r.code, 0, `weft audit: ${r.stderr}`);
    const lines = r.stdout.split('\n').filter((l) => l.trim());
    const entries = lines.map((l) => {
      try { return JSON.parse(l); } catch { assert.fail(`weft audit printed a line that is not JSON: ${l}`); }
      return null;
    });
    const miss = check(entries, 'weft audit');
    assert.deepEqual(miss, [], miss.join('\n'));
    for (const s of secrets) assert.ok(!r.stdout.includes(s), 'no secret in weft audit');
    // The same log: the API, read after the CLI, holds every entry the CLI printed, the same.
    const api = auditEntries((await hget(srv, '/auth/audit?limit=1000', { key: srv.adminKey })).json);
    const byId = new Map(api.map((x) => [x.id, x]));
    for (const x of entries) assert.deepEqual(byId.get(x.id), x, `entry ${x.id} differs between weft audit and GET /auth/audit`);
  });
});
