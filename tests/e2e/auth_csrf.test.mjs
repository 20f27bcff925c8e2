// Browser sessions and CSRF (issue 4, "How clients authenticate"): POST /auth/login sets an
// HttpOnly, SameSite=Strict session cookie and returns a CSRF token; state-changing cookie
// requests need X-CSRF-Token; cross-site origins are refused even with a valid cookie and
// token; Bearer requests need no CSRF token; logout ends the session.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startAuthServer, assertCleanStop, hreq, hget, hpost, errType, show, makeUser, login, freshIp,
  PASSWORD, ms, wsConnect,
} from './auth_helpers.mjs';
import { invertPrompt } from './helpers.mjs';

describe('auth sessions and CSRF', { timeout: ms(180000) }, () => {
  let srv;
  let ed;
  let sess;
  before(async () => {
    srv = await startAuthServer();
    ed = await makeUser(srv, 'c_editor', 'editor');
    sess = await login(srv, 'c_editor');
  });
  after(async () => { if (srv) await assertCleanStop(assert, srv); });

  test('login: cookie attributes and body', async () => {
    assert.equal(sess.status, 200);
    assert.equal(sess.json.user, 'c_editor', show(sess.r));
    assert.equal(sess.json.role, 'editor', show(sess.r));
    assert.ok(Array.isArray(sess.json.scopes) && sess.json.scopes.includes('prompt:submit'), show(sess.r));
    assert.ok(typeof sess.csrf === 'string' && sess.csrf.length >= 16, `csrf_token: ${show(sess.r)}`);
    const attrs = sess.setCookie.split(';').map((s) => s.trim().toLowerCase());
    assert.ok(attrs.includes('httponly'), `HttpOnly: ${sess.setCookie}`);
    assert.ok(attrs.includes('samesite=strict'), `SameSite=Strict: ${sess.setCookie}`);
    assert.ok(attrs.some((a) => a.startsWith('max-age=') || a.startsWith('expires=')), `an expiry: ${sess.setCookie}`);
    assert.ok(attrs.includes('path=/'), `Path=/: ${sess.setCookie}`);
    const token = sess.cookie.split('=')[1];
    assert.ok(token.length >= 20, 'a long session token');
    assert.ok(!sess.r.text.includes(token), 'the session token is not in the body (HttpOnly would be moot)');
    assert.notEqual(sess.csrf, token, 'the CSRF token is not the session token');
  });

  test('bad logins are 401 invalid_credentials and set no cookie', async () => {
    for (const [u, p] of [['c_editor', 'wrong password'], ['nobody_here', PASSWORD], ['', ''], ['c_editor', '']]) {
      const r = await hreq(srv, 'POST', '/auth/login', { body: { username: u, password: p }, from: freshIp() });
      assert.equal(r.status, 401, `login ${u}/${p}: ${show(r)}`);
      assert.equal(errType(r), 'invalid_credentials', show(r));
      assert.equal(r.headers['set-cookie'], undefined, 'no cookie on failure');
    }
    for (const body of ['not json', '{"username": 5}', '[]']) {
      const r = await hreq(srv, 'POST', '/auth/login', { body, headers: { 'content-type': 'application/json' }, from: freshIp() });
      assert.ok(r.status === 400 || r.status === 401, `login with ${body}: ${show(r)}`);
    }
  });

  test('the session cookie works for reads; GET /auth/me', async () => {
    const r = await hget(srv, '/auth/me', { session: sess, csrf: false });
    assert.equal(r.status, 200, show(r));
    assert.equal(r.json.user, 'c_editor');
    assert.equal(r.json.csrf_token, sess.csrf, 'a session learns its CSRF token again from /auth/me');
    const byKey = await hget(srv, '/auth/me', { key: srv.adminKey });
    assert.equal(byKey.json.csrf_token, undefined, 'API keys have no CSRF token');
    const q = await hget(srv, '/queue', { session: sess, csrf: false });
    assert.equal(q.status, 200, show(q));
  });

  test('cookie POST without X-CSRF-Token → 403 csrf; wrong token → 403; with it → allowed', async () => {
    const body = { prompt: invertPrompt({ prefix: 'csrf_a' }) };
    for (const p of ['/prompt', '/api/prompt']) {
      const r = await hreq(srv, 'POST', p, { session: sess, csrf: false, body });
      assert.equal(r.status, 403, `${p} without token: ${show(r)}`);
      assert.equal(errType(r), 'csrf', show(r));
    }
    const w = await hreq(srv, 'POST', '/prompt', { session: { cookie: sess.cookie, csrf: sess.csrf.slice(0, -1) + (sess.csrf.endsWith('a') ? 'b' : 'a') }, body });
    assert.equal(w.status, 403, `wrong token: ${show(w)}`);
    assert.equal(errType(w), 'csrf');
    const ok = await hreq(srv, 'POST', '/prompt', { session: sess, body });
    assert.equal(ok.status, 200, `with the token: ${show(ok)}`);
    // Other state-changing methods and routes.
    const d = await hreq(srv, 'DELETE', '/userdata/zz.json', { session: sess, csrf: false });
    assert.equal(d.status, 403, `DELETE without token: ${show(d)}`);
    const q = await hreq(srv, 'POST', '/queue', { session: sess, csrf: false, body: { clear: true } });
    assert.equal(q.status, 403, `POST /queue without token: ${show(q)}`);
    const q2 = await hreq(srv, 'POST', '/queue', { session: sess, body: {} });
    assert.equal(q2.status, 200, `POST /queue with token: ${show(q2)}`);
  });

  test('a cross-site Origin with the cookie and token → 403', async () => {
    const body = { prompt: invertPrompt({ prefix: 'csrf_x' }) };
    for (const origin of ['http://evil.example', 'https://127.0.0.1.evil.example', 'null']) {
      const r = await hreq(srv, 'POST', '/prompt', { session: sess, body, headers: { origin } });
      assert.equal(r.status, 403, `Origin ${origin}: ${show(r)}`);
    }
    // Same origin is fine.
    const same = await hreq(srv, 'POST', '/prompt', { session: sess, body, headers: { origin: srv.url } });
    assert.equal(same.status, 200, `same Origin: ${show(same)}`);
  });

  test('the WebSocket with the cookie: same origin opens, cross-site is refused', async () => {
    const ok = await wsConnect(srv, { session: sess, headers: { origin: srv.url } });
    await ok.waitFor((m) => m.type === 'status', { what: 'status' });
    ok.close();
    await assert.rejects(wsConnect(srv, { session: sess, headers: { origin: 'http://evil.example' } }),
      (e) => e.status === 403, 'cross-site WebSocket with a cookie (CSWSH)');
  });

  test('Bearer POST needs no CSRF token', async () => {
    const r = await hpost(srv, '/prompt', { prompt: invertPrompt({ prefix: 'csrf_b' }) }, { key: ed.key });
    assert.equal(r.status, 200, show(r));
    const q = await hpost(srv, '/queue', {}, { key: ed.key });
    assert.equal(q.status, 200, show(q));
  });

  test('logout ends the session', async () => {
    const s2 = await login(srv, 'c_editor');
    assert.notEqual(s2.cookie, sess.cookie, 'each login is a new session');
    const noTok = await hreq(srv, 'POST', '/auth/logout', { session: s2, csrf: false });
    assert.equal(noTok.status, 403, `logout is state-changing: needs the token: ${show(noTok)}`);
    const out = await hreq(srv, 'POST', '/auth/logout', { session: s2 });
    assert.ok(out.status === 200 || out.status === 204, show(out));
    const sc = [].concat(out.headers['set-cookie'] || []).join(' ');
    assert.match(sc, /weft_session=/, `logout clears the cookie: ${sc}`);
    const after1 = await hget(srv, '/auth/me', { session: s2, csrf: false, from: freshIp() });
    assert.equal(after1.status, 401, `the old cookie after logout: ${show(after1)}`);
    // The first session is unaffected.
    const still = await hget(srv, '/auth/me', { session: sess, csrf: false });
    assert.equal(still.status, 200, show(still));
  });

  test('a forged or tampered cookie is 401', async () => {
    for (const cookie of ['weft_session=', 'weft_session=deadbeef', sess.cookie + 'x', sess.cookie.slice(0, -2)]) {
      const r = await hget(srv, '/auth/me', { session: { cookie }, from: freshIp() });
      assert.equal(r.status, 401, `${cookie}: ${show(r)}`);
    }
  });
});

describe('auth origin checks behind a trusted proxy', { timeout: ms(120000) }, () => {
  test('--trust-proxy honours X-Forwarded-Host/-Proto; without it the forwarded origin is cross-site', async () => {
    for (const trust of [true, false]) {
      const srv = await startAuthServer({ args: trust ? ['--trust-proxy'] : [] });
      try {
        await makeUser(srv, 'p_editor', 'editor');
        const s = await login(srv, 'p_editor');
        // A proxy on the same machine that forwards to 127.0.0.1:PORT keeps that Host (nginx's
        // default), another passes the public Host through; both add X-Forwarded-*.
        for (const host of [null, 'weft.example.com']) {
          const headers = {
            origin: 'https://weft.example.com',
            'x-forwarded-host': 'weft.example.com',
            'x-forwarded-proto': 'https',
            'x-forwarded-for': '203.0.113.7',
          };
          if (host) headers.host = host;
          const what = `trust=${trust}, Host ${host || 'loopback'}`;
          const r = await hreq(srv, 'POST', '/queue', { session: s, body: {}, headers });
          if (trust) assert.equal(r.status, 200, `${what}: matching forwarded origin: ${show(r)}`);
          else if (!host) assert.equal(r.status, 403, `${what}: untrusted X-Forwarded-*: ${show(r)}`);
          const evil = await hreq(srv, 'POST', '/queue', { session: s, body: {}, headers: { ...headers, origin: 'https://evil.example' } });
          assert.equal(evil.status, 403, `${what}, foreign origin: ${show(evil)}`);
        }
      } finally {
        await assertCleanStop(assert, srv);
      }
    }
  });
});
