// The full role × route matrix (issue 4, "Tests and benchmarks"): generated from the route
// table `weft routes --json` and the role table as the server reports it (GET /auth/me per
// role), checked against the running server for every route and its /api twin with: no
// credential, the admin/editor/user/viewer keys, a key scoped down to one scope, a revoked
// key, an expired key and a disabled user's key. Only the auth outcome is checked: 401 for
// the credential failures, 403 "forbidden" when the scopes lack the route's, anything but
// 401/403 when they have them.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startAuthServer, assertCleanStop, hreq, hreqPatient, hget, hdel, errType, show, routeTable,
  fillPath, freshIp, makeUser, cliCreateKey, runWeft, ms, sleep, wsConnect,
} from './auth_helpers.mjs';

const bodyFor = (method) => (method === 'GET' || method === 'HEAD' || method === 'DELETE' ? undefined : {});

/** Does a principal with `have` scopes pass a route needing `need`? ("any" when the table
 * marks the route so, otherwise all of them). */
function passes(rt, have) {
  const need = rt.scopes || [];
  if (!need.length) return true;
  return rt.any ? need.some((s) => have.includes(s)) : need.every((s) => have.includes(s));
}

describe('auth matrix', { timeout: ms(600000) }, () => {
  let srv;
  let table;
  const creds = {}; // name -> {key, scopes|null, kind: 'role'|'fail'|'none'}
  const twinSkip = new Set();

  before(async () => {
    table = await routeTable();
    srv = await startAuthServer();
    assert.ok(srv.adminKey, 'bootstrap admin key');
    const roles = ['editor', 'user', 'viewer'];
    creds.admin = { key: srv.adminKey, kind: 'role' };
    for (const role of roles) {
      const u = await makeUser(srv, `m_${role}`, role);
      creds[role] = { key: u.key, kind: 'role' };
    }
    // A key scoped down to one scope of its owner's role.
    const scoped = await cliCreateKey(srv, 'm_user', { scopes: 'system:read' });
    creds['user key scoped to system:read'] = { key: scoped.key, kind: 'role' };
    // Revoked through the API (never used before: no cache involved).
    const rv = await makeUser(srv, 'm_revoked', 'user');
    const d = await hdel(srv, `/auth/keys/${rv.id}`, { key: srv.adminKey });
    assert.ok(d.status === 200 || d.status === 204, `DELETE /auth/keys/${rv.id}: ${show(d)}`);
    creds.revoked = { key: rv.key, kind: 'fail' };
    // Disabled through the CLI.
    const ds = await makeUser(srv, 'm_disabled', 'user');
    const dr = await runWeft(['users', 'disable', 'm_disabled', '--base-dir', srv.baseDir]);
    assert.equal(dr.code, 0, `weft users disable: ${dr.stderr}`);
    creds['disabled user'] = { key: ds.key, kind: 'fail' };
    // Expired: one second of life, then wait it out.
    const ex = await cliCreateKey(srv, 'm_user', { expiresIn: 1 });
    creds.expired = { key: ex.key, kind: 'fail' };
    creds['no credential'] = { key: null, kind: 'none' };
    await sleep(2200);
    // The role table, as the server reports it.
    for (const [name, c] of Object.entries(creds)) {
      if (c.kind !== 'role') continue;
      const me = await hreqPatient(srv, 'GET', '/auth/me', { key: c.key });
      assert.equal(me.status, 200, `GET /auth/me as ${name}: ${show(me)}`);
      assert.ok(Array.isArray(me.json.scopes), `GET /auth/me as ${name} lists scopes: ${show(me)}`);
      c.scopes = me.json.scopes;
    }
    // /api twins: every route is also served under /api (ComfyUI registers both); skip the
    // twin of a route the server does not register there, and say so.
    for (const rt of table) {
      const r = await hreqPatient(srv, rt.method, '/api' + fillPath(rt.path), { key: srv.adminKey, body: bodyFor(rt.method) });
      if (r.status === 404 && errType(r) === 'not_found' && /route/i.test(r.text)) twinSkip.add(`${rt.method} ${rt.path}`);
    }
    if (twinSkip.size) console.log(`# routes without an /api twin: ${[...twinSkip].join(', ')}`);
  });
  after(async () => { if (srv) await assertCleanStop(assert, srv); });

  test('the route table is complete and well-formed', () => {
    const seen = new Set();
    for (const rt of table) {
      assert.match(rt.method, /^(GET|POST|PUT|PATCH|DELETE)$/, JSON.stringify(rt));
      assert.match(rt.path, /^\//, JSON.stringify(rt));
      assert.ok(Array.isArray(rt.scopes), JSON.stringify(rt));
      assert.equal(typeof rt.public, 'boolean', JSON.stringify(rt));
      const k = `${rt.method} ${rt.path}`;
      assert.ok(!seen.has(k), `duplicate route ${k}`);
      seen.add(k);
    }
    // Every route of the ComfyUI API (comfyui-api.md) and of issue 4 is in the table.
    for (const k of ['GET /ws', 'GET /prompt', 'POST /prompt', 'GET /queue', 'POST /queue', 'POST /interrupt',
      'POST /free', 'GET /history', 'POST /history', 'GET /object_info', 'GET /system_stats', 'GET /view',
      'POST /upload/image', 'POST /upload/mask', 'GET /userdata', 'GET /v2/userdata', 'GET /health',
      'POST /auth/login', 'POST /auth/logout', 'GET /auth/me', 'POST /auth/keys', 'POST /auth/users',
      'GET /auth/audit']) {
      assert.ok(seen.has(k), `route table lists ${k}`);
    }
    const known = new Set(creds.admin.scopes);
    for (const rt of table) {
      for (const s of rt.scopes) assert.ok(known.has(s), `${rt.method} ${rt.path} needs unknown scope ${s} (admin has every scope)`);
    }
    // Routes that need a principal but no scope: the socket and the principal's own things
    // (session, keys, share links), which the handlers limit to the caller's own.
    const selfService = new Set(['GET /ws', 'GET /auth/me', 'POST /auth/logout', 'GET /auth/keys', 'POST /auth/keys',
      'DELETE /auth/keys/{id}', 'GET /weft/share_links', 'DELETE /weft/share_links/{id}']);
    for (const rt of table) {
      if (!rt.public && !rt.scopes.length) {
        assert.ok(selfService.has(`${rt.method} ${rt.path}`), `${rt.method} ${rt.path} is non-public but names no scope`);
      }
    }
    const pub = table.filter((r) => r.public).map((r) => `${r.method} ${r.path}`).sort();
    for (const p of pub) {
      assert.ok(/^(GET \/health|POST \/auth\/login|GET \/share\/|GET \/$|GET \/(login|static|assets))/.test(p),
        `only health, login, share links and static files are public, not ${p}`);
    }
  });

  test('role scopes as reported match the documented roles', () => {
    const a = new Set(creds.admin.scopes);
    const e = new Set(creds.editor.scopes);
    const u = new Set(creds.user.scopes);
    const v = new Set(creds.viewer.scopes);
    const sub = (x, y) => [...x].every((s) => y.has(s));
    assert.ok(sub(e, a) && sub(u, e) && sub(v, u), 'viewer ⊆ user ⊆ editor ⊆ admin');
    assert.ok(!v.has('prompt:submit') && !v.has('upload') && !v.has('workflows:write'), `viewer is read-only: ${[...v]}`);
    assert.ok(u.has('prompt:submit') && !u.has('queue:read:any') && !u.has('history:read:any'), `user: ${[...u]}`);
    assert.ok(e.has('queue:read:any') && e.has('workflows:share') && !e.has('admin:users'), `editor: ${[...e]}`);
    assert.deepEqual(creds['user key scoped to system:read'].scopes, ['system:read'], 'a key carries only its scopes');
  });

  for (const credName of ['no credential', 'admin', 'editor', 'user', 'viewer', 'user key scoped to system:read',
    'revoked', 'expired', 'disabled user']) {
    test(`matrix: ${credName}`, async () => {
      const c = creds[credName];
      const bad = [];
      const kinds = {};
      let n = 0;
      for (const rt of table) {
        const paths = [fillPath(rt.path)];
        if (!twinSkip.has(`${rt.method} ${rt.path}`)) paths.push('/api' + fillPath(rt.path));
        for (const p of paths) {
          n++;
          // Failing credentials each come from a fresh address so the per-IP throttle of
          // invalid keys (tested in auth_bruteforce) does not turn 401s into 429s here.
          const opts = { key: c.key, body: bodyFor(rt.method), from: c.kind === 'role' ? undefined : freshIp() };
          const r = await hreqPatient(srv, rt.method, p, opts);
          const got = `${r.status} type=${errType(r)}`;
          let want;
          let ok;
          if (rt.public) {
            // A public route needs nothing; a bad credential sent to it may be ignored or refused.
            want = c.kind === 'fail' ? 'not 403 (401 or the handler\'s answer)' : 'not 401/403';
            ok = c.kind === 'fail' ? r.status !== 403 : r.status !== 401 && r.status !== 403;
          } else if (c.kind === 'none') {
            want = '401 auth_required + WWW-Authenticate: Bearer';
            ok = r.status === 401 && errType(r) === 'auth_required' && /^Bearer/i.test(r.headers['www-authenticate'] || '');
          } else if (c.kind === 'fail') {
            want = '401 invalid_credentials';
            ok = r.status === 401 && errType(r) === 'invalid_credentials';
          } else if (passes(rt, c.scopes)) {
            want = 'not 401/403';
            ok = r.status !== 401 && r.status !== 403 && r.status !== 429;
          } else {
            want = `403 forbidden (needs ${rt.scopes.join(',')})`;
            ok = r.status === 403 && errType(r) === 'forbidden';
          }
          kinds[want.split(' (')[0]] = (kinds[want.split(' (')[0]] || 0) + 1;
          if (!ok) bad.push(`${rt.method} ${p}: want ${want}, got ${got} ${r.text.slice(0, 120)}`);
        }
      }
      console.log(`# ${credName}: ${n} requests: ${Object.entries(kinds).map(([k, v]) => `${v} × ${k}`).join(', ')}`);
      assert.ok(n >= table.length, 'every route was tried');
      assert.deepEqual(bad, [], `${credName}: ${bad.length} of ${n} requests with the wrong auth outcome:\n${bad.join('\n')}`);
    });
  }

  test('WebSocket upgrade: every credential', async () => {
    const rt = table.find((r) => r.method === 'GET' && r.path === '/ws');
    assert.ok(rt, '/ws is in the route table');
    for (const [name, c] of Object.entries(creds)) {
      for (const wsPath of ['/ws', '/api/ws']) {
        const attempt = wsConnect(srv, { key: c.key, path: wsPath, from: c.kind === 'role' ? undefined : freshIp() });
        if (c.kind === 'role' && passes(rt, c.scopes)) {
          const ws = await attempt;
          ws.close();
        } else {
          const want = c.kind === 'role' ? 403 : 401;
          await assert.rejects(attempt, (e) => e.status === want, `${name} on ${wsPath}: want ${want}`);
        }
      }
    }
  });

  test('a key never carries more than its owner\'s role', async () => {
    const r = await runWeft(['keys', 'create', '--user', 'm_viewer', '--scopes', 'prompt:submit', '--base-dir', srv.baseDir]);
    assert.notEqual(r.code, 0, `a viewer key with prompt:submit must be refused: ${r.stdout}`);
    assert.doesNotMatch(r.stdout, /weft_[A-Za-z0-9]+_/);
    const a = await hreq(srv, 'POST', '/auth/keys', { key: srv.adminKey, body: { user: 'm_viewer', scopes: ['admin:users'] } });
    assert.ok(a.status === 400 || a.status === 403, `POST /auth/keys with scopes beyond the role: ${show(a)}`);
    // A user cannot mint a key for someone else or beyond itself.
    const b = await hreq(srv, 'POST', '/auth/keys', { key: creds.user.key, body: { user: 'm_editor' } });
    assert.equal(b.status, 403, `a user creating a key for another user: ${show(b)}`);
    const b2 = await hreq(srv, 'POST', '/auth/keys', { key: creds.user.key, body: { user: 'm_user', scopes: ['queue:read:any'] } });
    assert.ok(b2.status === 400 || b2.status === 403, `a user creating a key beyond its role: ${show(b2)}`);
    const me = await hget(srv, '/auth/me', { key: creds.user.key });
    assert.equal(me.status, 200);
    // A key scoped down cannot mint itself a wider one: asking for no scopes ("all of the
    // role") gives at most its own, and naming a scope it lacks is refused.
    const sk = creds['user key scoped to system:read'].key;
    const c = await hreq(srv, 'POST', '/auth/keys', { key: sk, body: { user: 'm_user' } });
    if (c.status === 201 || c.status === 200) {
      const me2 = await hget(srv, '/auth/me', { key: c.json.key });
      assert.deepEqual(me2.json.scopes, ['system:read'], `a key minted by a scoped key: ${show(me2)}`);
    } else {
      assert.equal(c.status, 403, show(c));
    }
    const c2 = await hreq(srv, 'POST', '/auth/keys', { key: sk, body: { user: 'm_user', scopes: ['prompt:submit'] } });
    assert.equal(c2.status, 403, `a scoped key asking for prompt:submit: ${show(c2)}`);
  });
});
