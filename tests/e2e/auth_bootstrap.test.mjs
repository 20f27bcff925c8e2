// Bootstrap and the default-deny gate (issue 4, "Bootstrap and CLI" and "Principals"): the
// first start creates an admin user and key (printed once, written to <base>/admin.key with
// mode 0600), a second start prints nothing new, --no-auth is refused off loopback, and with
// no credential every non-public route answers 401.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import {
  startAuthServer, assertCleanStop, hreq, hget, errType, show, routeTable, fillPath, freshIp,
  KEY_RE, ms, sleep, tmpRoot, wsConnect,
} from './auth_helpers.mjs';

const bodyFor = (method) => (method === 'GET' || method === 'HEAD' || method === 'DELETE' ? undefined : {});

describe('auth bootstrap', { timeout: ms(180000) }, () => {
  let root;
  let baseDir;
  let srv;
  let table;
  before(async () => {
    root = tmpRoot('weft-auth-boot-');
    baseDir = `${root.dir}/base`;
    table = await routeTable();
  });
  after(async () => {
    if (srv) await srv.stop();
    root.cleanup();
  });

  test('first start: admin key printed once and written to admin.key with mode 0600', async () => {
    srv = await startAuthServer({ baseDir });
    assert.ok(srv.adminKey, `admin.key holds a key; stdout: ${srv.stdout()}`);
    assert.match(srv.adminKey, /^weft_[A-Za-z0-9]+_[A-Za-z0-9_-]{16,}$/, 'key format weft_<id>_<secret>');
    const mode = statSync(srv.keyFile).mode & 0o777;
    assert.equal(mode, 0o600, `admin.key mode is ${mode.toString(8)}`);
    assert.equal(srv.printedKey, srv.adminKey, `the key printed on stdout is the one in admin.key; stdout: ${srv.stdout()}`);
    const matches = srv.stdout().match(new RegExp(KEY_RE.source, 'g')) || [];
    assert.equal(new Set(matches).size, 1, 'one key printed');
    assert.ok(!srv.stderr().includes(srv.adminKey), 'the key does not reach the log (stderr)');
    const me = await hget(srv, '/auth/me', { key: srv.adminKey });
    assert.equal(me.status, 200, show(me));
    assert.equal(me.json.role, 'admin', show(me));
    assert.ok(Array.isArray(me.json.scopes) && me.json.scopes.includes('admin:users') &&
      me.json.scopes.includes('admin:keys'), show(me));
    assert.equal(typeof me.json.user, 'string');
  });

  test('with no credential every non-public route answers 401 auth_required with WWW-Authenticate', async () => {
    const bad = [];
    let nonPublic = 0;
    for (const rt of table) {
      if (rt.public) continue;
      nonPublic++;
      for (const p of [fillPath(rt.path), '/api' + fillPath(rt.path)]) {
        const r = await hreq(srv, rt.method, p, { body: bodyFor(rt.method) });
        const www = r.headers['www-authenticate'] || '';
        if (r.status !== 401 || errType(r) !== 'auth_required' || !/^Bearer\b/i.test(www)) {
          bad.push(`${rt.method} ${p}: ${r.status} type=${errType(r)} www-authenticate=${JSON.stringify(www)}`);
        }
      }
    }
    assert.ok(nonPublic >= 30, `route table lists ${nonPublic} non-public routes`);
    assert.deepEqual(bad, [], `routes not answering 401 without a credential:\n${bad.join('\n')}`);
    // The WebSocket upgrade too.
    await assert.rejects(wsConnect(srv, {}), (e) => e.status === 401);
  });

  test('public routes answer without a credential', async () => {
    const h = await hget(srv, '/health');
    assert.equal(h.status, 200, show(h));
    const pub = table.filter((r) => r.public).map((r) => `${r.method} ${r.path}`);
    assert.ok(pub.includes('GET /health'), `GET /health is public: ${pub}`);
    assert.ok(pub.includes('POST /auth/login'), `POST /auth/login is public: ${pub}`);
    for (const rt of table.filter((r) => r.public)) {
      const r = await hreq(srv, rt.method, fillPath(rt.path), { body: bodyFor(rt.method), from: freshIp() });
      assert.ok(r.status !== 401 && r.status !== 403, `${rt.method} ${rt.path} is public but answered ${show(r)}`);
    }
  });

  test('credentials in the wrong place or form are refused', async () => {
    const secret = srv.adminKey;
    const cases = [
      ['no scheme', { authorization: secret }],
      ['Basic', { authorization: 'Basic ' + Buffer.from('admin:' + secret).toString('base64') }],
      ['empty bearer', { authorization: 'Bearer ' }],
      ['truncated key', { authorization: 'Bearer ' + secret.slice(0, -1) }],
      ['extended key', { authorization: 'Bearer ' + secret + 'x' }],
      ['garbage', { authorization: 'Bearer weft_' }],
      ['NUL-ish', { authorization: 'Bearer weft_%00_abc' }],
    ];
    for (const [what, headers] of cases) {
      const r = await hreq(srv, 'GET', '/system_stats', { headers, from: freshIp() });
      assert.equal(r.status, 401, `${what}: ${show(r)}`);
      assert.ok(['auth_required', 'invalid_credentials'].includes(errType(r)), `${what}: ${show(r)}`);
      assert.ok(!r.text.includes(secret), `${what}: the error echoes no key`);
    }
    // Keys in URLs get logged: they are never accepted there.
    for (const q of ['key', 'token', 'api_key', 'access_token']) {
      const r = await hreq(srv, 'GET', `/system_stats?${q}=${encodeURIComponent(secret)}`, { from: freshIp() });
      assert.equal(r.status, 401, `?${q}=KEY: ${show(r)}`);
      await assert.rejects(wsConnect(srv, { query: `${q}=${encodeURIComponent(secret)}`, from: freshIp() }),
        (e) => e.status === 401, `ws ?${q}=KEY`);
    }
    assert.ok(!srv.stderr().includes(secret.split('_').slice(2).join('_')), 'no secret in the log');
  });

  test('WebSocket: the key as the subprotocol pair "weft.bearer, <key>"', async () => {
    const ws = await wsConnect(srv, { protocols: ['weft.bearer', srv.adminKey] });
    assert.equal(ws.ws.protocol, 'weft.bearer', 'the server selects weft.bearer, never echoes the key');
    await ws.waitFor((m) => m.type === 'status', { what: 'status' });
    ws.close();
    const bad = srv.adminKey.slice(0, -2) + (srv.adminKey.endsWith('AA') ? 'BA' : 'AA');
    await assert.rejects(wsConnect(srv, { protocols: ['weft.bearer', bad], from: freshIp() }), (e) => e.status === 401);
    await assert.rejects(wsConnect(srv, { protocols: ['weft.bearer'], from: freshIp() }), (e) => e.status === 401);
    // The pair is a WebSocket-only form: plain HTTP ignores it.
    const r = await hreq(srv, 'GET', '/system_stats', { headers: { 'sec-websocket-protocol': `weft.bearer, ${srv.adminKey}` } });
    assert.equal(r.status, 401, show(r));
  });

  test('second start prints no key and keeps admin.key', async () => {
    const before1 = readFileSync(srv.keyFile, 'utf8');
    const mtime = statSync(srv.keyFile).mtimeMs;
    await assertCleanStop(assert, srv);
    srv = null;
    await sleep(20);
    srv = await startAuthServer({ baseDir, noBootstrap: true });
    await sleep(200);
    assert.equal(srv.stdout().match(KEY_RE), null, `no key printed on the second start: ${srv.stdout()}`);
    assert.equal(readFileSync(srv.keyFile, 'utf8'), before1, 'admin.key unchanged');
    assert.equal(statSync(srv.keyFile).mtimeMs, mtime, 'admin.key not rewritten');
    const me = await hget(srv, '/auth/me', { key: srv.adminKey });
    assert.equal(me.status, 200, `the bootstrap key still works: ${show(me)}`);
    await assertCleanStop(assert, srv);
    srv = null;
  });

  test('--no-auth off loopback refuses to start with exit code 2', async () => {
    for (const listen of ['0.0.0.0', '::']) {
      const r = await startAuthServer({ args: ['--no-auth', '--listen', listen], expectExit: true, timeoutMs: ms(10000) });
      assert.equal(r.exitedEarly, true, `--no-auth --listen ${listen} must not start`);
      assert.equal(r.code, 2, `exit code for --no-auth --listen ${listen}: ${r.code}; stderr: ${r.stderr}`);
      assert.match(r.stderr, /no-auth/, `the message names --no-auth: ${r.stderr}`);
      assert.match(r.stderr, /loopback|127\.0\.0\.1|localhost/i, `the message says loopback only: ${r.stderr}`);
      assert.doesNotMatch(r.stdout, /listening/);
    }
  });

  test('--no-auth on loopback serves without a credential', async () => {
    const s = await startAuthServer({ args: ['--no-auth'], noBootstrap: true });
    try {
      const r = await hget(s, '/system_stats');
      assert.equal(r.status, 200, show(r));
      const q = await hget(s, '/queue');
      assert.equal(q.status, 200, show(q));
    } finally {
      await assertCleanStop(assert, s);
    }
  });
});
