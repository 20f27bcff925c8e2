// Helpers for the end-to-end tests of authentication and isolation (issue 4): start the real
// `weft serve` WITH authentication (no --no-auth), pick up the bootstrap admin key, create
// users and keys through the CLI or the HTTP API, and send requests carrying a Bearer key or a
// session cookie from a chosen loopback source address (127.x.y.z), so that the per-IP
// throttles one test trips do not leak into the next. Every wait here is bounded.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import WebSocket from 'ws';
import { WEFT_BIN, ms, sleep, tmpRoot, withTimeout, WsClient } from './helpers.mjs';

export { WEFT_BIN, ms, sleep, tmpRoot, withTimeout, WsClient };

export const KEY_RE = /weft_[A-Za-z0-9]+_[A-Za-z0-9_-]+/;
export const PASSWORD = 'correct horse battery staple';

// ------------------------------------------------------------------ source addresses

// Each test file runs in its own process; spread them over 127.<pid-based>.x.y so that two
// files never share an address, and hand out a fresh one whenever a test wants a clean slate.
let ipCounter = 0;
const ipBase = 16 + (process.pid % 200);
/** A loopback address no request has used yet in this process. */
export function freshIp() {
  const c = ipCounter++;
  return `127.${ipBase}.${Math.floor(c / 254) % 256}.${(c % 254) + 1}`;
}
/** Requests without an explicit `from` each come from a new address: the per-address token
 * bucket (20 requests/s) is a limit the rate-limit tests check on purpose, not something
 * every other test should trip over. */
export const MAIN_IP = freshIp();

// ------------------------------------------------------------------ processes

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/** Runs `weft ARGS` to completion (bounded). Resolves {code, signal, stdout, stderr}. */
export function runWeft(args, { stdin, timeoutMs = ms(30000), env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(WEFT_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    live.add(p);
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8');
    p.stderr.setEncoding('utf8');
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`timeout after ${timeoutMs} ms: weft ${args.join(' ')}\nstdout: ${out}\nstderr: ${err}`));
    }, timeoutMs);
    p.on('error', (e) => { clearTimeout(timer); live.delete(p); reject(e); });
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      live.delete(p);
      resolve({ code, signal, stdout: out, stderr: err });
    });
    p.stdin.on('error', () => { /* the process may not read stdin */ });
    if (stdin !== undefined) p.stdin.end(stdin);
    else p.stdin.end();
  });
}

/**
 * Starts `weft serve --port 0 --base-dir DIR [...args]` with authentication on and waits for
 * "weft: listening on http://HOST:PORT". On a fresh base dir the server bootstraps an admin
 * user and key: srv.adminKey is read from <base>/admin.key (null when the file is absent),
 * srv.printedKey is the key found on stdout (null when none was printed).
 * opts.baseDir reuses a directory (kept on stop); otherwise a temp dir removed by stop().
 * opts.expectExit: resolve {code, stdout, stderr} when the process exits before listening
 * instead of rejecting.
 */
export async function startAuthServer(opts = {}) {
  const { args = [], timeoutMs = ms(20000), env = {} } = opts;
  let root = null;
  let baseDir = opts.baseDir;
  if (!baseDir) {
    root = tmpRoot('weft-auth-e2e-');
    baseDir = path.join(root.dir, 'base');
  }
  if (!existsSync(WEFT_BIN)) throw new Error(`WEFT_BIN not found: ${WEFT_BIN}`);
  const argv = ['serve', '--port', '0', '--base-dir', baseDir, ...args];
  const proc = spawn(WEFT_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  live.add(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; if (process.env.WEFT_E2E_VERBOSE) process.stderr.write(d); });
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => { live.delete(proc); resolve({ code, signal }); });
  });
  const ready = new Promise((resolve, reject) => {
    const check = () => {
      const m = out.match(/weft: listening on (http:\/\/(\[[^\]]+\]|[^\s:/]+):(\d+))/);
      if (m) resolve({ url: m[1], host: m[2], port: Number(m[3]) });
    };
    proc.stdout.on('data', check);
    proc.on('error', reject);
    exited.then(({ code, signal }) => {
      if (opts.expectExit) resolve({ exitedEarly: true, code, signal });
      else reject(new Error(`weft serve exited before listening (code ${code}, signal ${signal})\n` +
        `stdout: ${out}\nstderr: ${err.slice(-4000)}`));
    });
  });
  let info;
  try {
    info = await withTimeout(ready, timeoutMs, `weft ${argv.join(' ')} did not print its listening line`);
  } catch (e) {
    proc.kill('SIGKILL');
    await exited;
    if (root) root.cleanup();
    throw e;
  }
  if (info.exitedEarly) {
    // Let the pipes drain so the caller sees the whole message.
    await sleep(50);
    if (root) root.cleanup();
    return { exitedEarly: true, code: info.code, signal: info.signal, stdout: out, stderr: err };
  }
  // The key line may follow the listening line by a moment.
  const keyFile = path.join(baseDir, 'admin.key');
  let adminKey = null;
  for (let i = 0; i < 40; i++) {
    if (existsSync(keyFile)) {
      const m = readFileSync(keyFile, 'utf8').match(KEY_RE);
      if (m) { adminKey = m[0]; break; }
    }
    if (opts.noBootstrap) break;
    await sleep(25);
  }
  const pm = out.match(KEY_RE);
  const srv = {
    ...info,
    baseDir,
    keyFile,
    root: root ? root.dir : null,
    proc,
    pid: proc.pid,
    exited,
    adminKey,
    printedKey: pm ? pm[0] : null,
    stdout: () => out,
    stderr: () => err,
    /** SIGTERM, wait (bounded), SIGKILL as a last resort. Resolves {code, signal, forced}. */
    async stop(waitMs = ms(15000), { keepDir = false } = {}) {
      let res;
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        res = await Promise.race([exited, sleep(waitMs).then(() => null)]);
        if (!res) {
          proc.kill('SIGKILL');
          res = { ...(await exited), forced: true };
        }
      } else {
        res = await exited;
      }
      if (root && !keepDir) root.cleanup();
      return res;
    },
    cleanup() { if (root) root.cleanup(); },
  };
  return srv;
}

/** Stops the server and asserts a clean exit (code 0; under ASan that also means no leak). */
export async function assertCleanStop(assert, srv, waitMs = ms(15000)) {
  const res = await srv.stop(waitMs);
  const tail = srv.stderr().slice(-4000);
  assert.ok(!res.forced, `server did not exit within ${waitMs} ms of SIGTERM; stderr:\n${tail}`);
  assert.equal(res.signal, null, `server died of ${res.signal}; stderr:\n${tail}`);
  assert.equal(res.code, 0, `exit code ${res.code}; stderr:\n${tail}`);
  return res;
}

// ------------------------------------------------------------------ HTTP

/**
 * One request on its own connection from a chosen source address.
 * opts: key (Bearer), session ({cookie, csrf}: cookie header and, when csrf !== false,
 * X-CSRF-Token), headers, body (object → JSON, string, Buffer, FormData), from (source IP,
 * default a fresh one), timeoutMs.
 * Resolves {status, headers (lower-case object), text, json, bytes, ms}.
 */
export async function hreq(srv, method, urlPath, opts = {}) {
  const headers = {};
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.session) {
    headers.cookie = opts.session.cookie;
    if (opts.session.csrf && opts.csrf !== false) headers['x-csrf-token'] = opts.session.csrf;
  }
  let payload = null;
  const body = opts.body;
  if (body instanceof FormData) {
    const r = new Response(body);
    headers['content-type'] = r.headers.get('content-type');
    payload = Buffer.from(await r.arrayBuffer());
  } else if (Buffer.isBuffer(body)) {
    payload = body;
  } else if (typeof body === 'string') {
    payload = Buffer.from(body, 'utf8');
  } else if (body !== undefined && body !== null) {
    payload = Buffer.from(JSON.stringify(body), 'utf8');
    headers['content-type'] = 'application/json';
  }
  if (payload) headers['content-length'] = String(payload.length);
  else if (method === 'POST' || method === 'PUT' || method === 'PATCH') headers['content-length'] = '0';
  Object.assign(headers, opts.headers || {});
  const timeoutMs = opts.timeoutMs || ms(15000);
  const t0 = performance.now();
  return withTimeout(new Promise((resolve, reject) => {
    const rq = http.request({
      host: srv.host, port: srv.port, method, path: urlPath, headers,
      localAddress: opts.from || freshIp(), agent: false,
    }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        const bytes = Buffer.concat(parts);
        const text = bytes.toString('utf8');
        let json;
        try { json = text.length ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json, bytes, ms: performance.now() - t0 });
      });
      res.on('error', reject);
    });
    rq.on('error', reject);
    if (payload) rq.end(payload);
    else rq.end();
  }), timeoutMs, `${method} ${urlPath}`);
}

export const hget = (srv, p, opts) => hreq(srv, 'GET', p, opts);
export const hpost = (srv, p, body, opts = {}) => hreq(srv, 'POST', p, { ...opts, body });
export const hdel = (srv, p, opts) => hreq(srv, 'DELETE', p, opts);

/** "type" of a JSON error body ({"error": {"type"}} or {"error": "text"}), or undefined. */
export function errType(r) {
  const e = r.json && r.json.error;
  if (!e) return undefined;
  return typeof e === 'string' ? e : e.type;
}

/** A short description of a response for assertion messages. */
export function show(r) {
  return `${r.status} ${(r.text || '').slice(0, 300)}`;
}

/** Retries while the server answers 429 (rate limits are not what the caller is testing),
 * honouring Retry-After up to maxWaitMs in total. */
export async function hreqPatient(srv, method, urlPath, opts = {}, maxWaitMs = ms(20000)) {
  const deadline = performance.now() + maxWaitMs;
  for (;;) {
    const r = await hreq(srv, method, urlPath, opts);
    if (r.status !== 429 || performance.now() > deadline) return r;
    const ra = Number(r.headers['retry-after'] || 1);
    await sleep(Math.min(Math.max(ra, 0.05) * 1000, Math.max(0, deadline - performance.now())));
  }
}

// ------------------------------------------------------------------ users, keys, sessions

function keyId(key) {
  const m = key.match(/^weft_([A-Za-z0-9]+)_/);
  return m ? m[1] : null;
}
export { keyId };

/** `weft users add NAME --role ROLE --password-stdin --base-dir BASE`. */
export async function cliAddUser(srv, name, role, password = PASSWORD) {
  const r = await runWeft(['users', 'add', name, '--role', role, '--password-stdin', '--base-dir', srv.baseDir],
    { stdin: password + '\n' });
  if (r.code !== 0) throw new Error(`weft users add ${name} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r;
}

/** `weft keys create --user NAME [--scopes a,b] [--expires-in S]`: resolves {key, id, out}. */
export async function cliCreateKey(srv, user, { scopes, expiresIn, label } = {}) {
  const args = ['keys', 'create', '--user', user, '--base-dir', srv.baseDir];
  if (scopes) args.push('--scopes', Array.isArray(scopes) ? scopes.join(',') : scopes);
  if (expiresIn !== undefined) args.push('--expires-in', String(expiresIn));
  if (label) args.push('--label', label);
  const r = await runWeft(args);
  const m = r.stdout.match(KEY_RE);
  if (r.code !== 0 || !m) throw new Error(`weft ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return { key: m[0], id: keyId(m[0]), out: r.stdout };
}

/** POST /auth/users with the admin key. */
export async function apiAddUser(srv, name, role, password = PASSWORD, from) {
  const r = await hreqPatient(srv, 'POST', '/auth/users', { key: srv.adminKey, body: { name, username: name, password, role }, from });
  if (r.status !== 200 && r.status !== 201) throw new Error(`POST /auth/users ${name}: ${show(r)}`);
  return r;
}

/** POST /auth/keys with the admin key (or opts.as): resolves {key, id, json}. */
export async function apiCreateKey(srv, user, { scopes, expiresIn, label, as, from } = {}) {
  const body = { user };
  if (scopes) body.scopes = scopes;
  if (expiresIn !== undefined) body.expires_in_s = expiresIn;
  if (label) body.label = label;
  const r = await hreqPatient(srv, 'POST', '/auth/keys', { key: as || srv.adminKey, body, from });
  const m = r.text.match(KEY_RE);
  if ((r.status !== 200 && r.status !== 201) || !m) throw new Error(`POST /auth/keys for ${user}: ${show(r)}`);
  return { key: m[0], id: (r.json && r.json.id) || keyId(m[0]), json: r.json };
}

/** A user with a key, through the CLI. Resolves {name, role, password, key, id}. */
export async function makeUser(srv, name, role, opts = {}) {
  const password = opts.password || PASSWORD;
  await cliAddUser(srv, name, role, password);
  const k = await cliCreateKey(srv, name, opts);
  return { name, role, password, key: k.key, id: k.id };
}

/** POST /auth/login; resolves {status, json, cookie ("weft_session=..."), setCookie (raw),
 * csrf, r}. Throws unless opts.allowFail. */
export async function login(srv, username, password = PASSWORD, opts = {}) {
  const r = await hreq(srv, 'POST', '/auth/login', { body: { username, password }, from: opts.from, headers: opts.headers });
  const sc = [].concat(r.headers['set-cookie'] || []);
  const raw = sc.find((c) => /^\s*weft_session=/.test(c)) || null;
  const cookie = raw ? raw.split(';')[0].trim() : null;
  if (!opts.allowFail && (r.status !== 200 || !cookie)) throw new Error(`login ${username}: ${show(r)} set-cookie=${JSON.stringify(sc)}`);
  return { status: r.status, json: r.json, cookie, setCookie: raw, csrf: r.json && r.json.csrf_token, r };
}

// ------------------------------------------------------------------ route table

/** `weft routes --json`: [{method, path, scopes, public}]. */
export async function routeTable() {
  const r = await runWeft(['routes', '--json']);
  if (r.code !== 0) throw new Error(`weft routes --json exited ${r.code}: ${r.stderr}`);
  let t;
  try { t = JSON.parse(r.stdout); } catch (e) { throw new Error(`weft routes --json printed no JSON: ${r.stdout.slice(0, 500)}`); }
  if (!Array.isArray(t)) throw new Error(`weft routes --json: not an array: ${r.stdout.slice(0, 500)}`);
  return t;
}

/** A concrete URL path for a route pattern: "{name}", ":name", "*" and "**" segments become
 * dummy values that name nothing that exists. */
export function fillPath(pattern) {
  return pattern.split('/').map((seg) => {
    if (/^\{[^}]*\}$/.test(seg) || /^:/.test(seg) || seg === '*' || seg === '**' || /^<[^>]*>$/.test(seg)) {
      const n = seg.replace(/[{}:<>*]/g, '').toLowerCase();
      if (/id$/.test(n) || n === 'key') return 'zzdummy0000';
      if (n === 'token') return 'zzdummytoken0000';
      if (n === 'owner' || n === 'user' || n === 'name') return 'zznobody';
      return 'zzdummy.json';
    }
    return seg;
  }).join('/');
}

// ------------------------------------------------------------------ WebSocket

/**
 * Opens /ws with a Bearer key (opts.key) or a session cookie (opts.session), optional
 * subprotocols (opts.protocols) and an optional query. Resolves a WsClient; rejects with err.status set when the upgrade is refused.
 */
export async function wsConnect(srv, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.session) headers.cookie = opts.session.cookie;
  const q = opts.query ? '?' + opts.query : '';
  const ws = new WebSocket(`ws://${srv.host}:${srv.port}${opts.path || '/ws'}${q}`, opts.protocols,
    { headers, localAddress: opts.from || freshIp(), handshakeTimeout: opts.timeoutMs || ms(10000) });
  const c = new WsClient(ws);
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_, res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        const e = new Error(`ws upgrade answered ${res.statusCode}: ${Buffer.concat(parts).toString('utf8').slice(0, 200)}`);
        e.status = res.statusCode;
        e.headers = res.headers;
        e.body = Buffer.concat(parts).toString('utf8');
        try { ws.terminate(); } catch { /* gone */ }
        reject(e);
      });
    });
    ws.once('error', reject);
  }), opts.timeoutMs || ms(10000), `WebSocket connect ${q}`);
  return c;
}

// ------------------------------------------------------------------ prompts

/** Polls GET /history/{id} with a key until it has an entry; resolves the entry. */
export async function waitHistoryAs(srv, key, promptId, timeoutMs = ms(60000)) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = await hreq(srv, 'GET', `/history/${encodeURIComponent(promptId)}`, { key });
    if (r.status === 200 && r.json && r.json[promptId]) return r.json[promptId];
    if (performance.now() > deadline) {
      throw new Error(`timeout after ${timeoutMs} ms waiting for history of ${promptId} (last: ${show(r)})`);
    }
    await sleep(r.status === 429 ? 500 : 50);
  }
}

/** POST /prompt with a key; throws unless 200; resolves the JSON. */
export async function submitAs(srv, key, prompt, extra = {}, from = undefined) {
  const r = await hreq(srv, 'POST', '/prompt', { key, body: { prompt, ...extra }, from });
  if (r.status !== 200) throw new Error(`POST /prompt answered ${show(r)}`);
  return r.json;
}

/** Entries of an audit listing, whatever the wrapper: [..] or {entries|audit|items: [..]}. */
export function auditEntries(json) {
  if (Array.isArray(json)) return json;
  if (json && typeof json === 'object') {
    for (const k of ['entries', 'audit', 'items', 'log', 'events']) if (Array.isArray(json[k])) return json[k];
  }
  return [];
}

// ------------------------------------------------------------------ admin routes

/** PATCH /auth/users/{name} with the admin key; throws unless 200/204. */
export async function apiPatchUser(srv, name, body, from) {
  const r = await hreq(srv, 'PATCH', `/auth/users/${encodeURIComponent(name)}`, { key: srv.adminKey, body, from });
  if (r.status !== 200 && r.status !== 204) throw new Error(`PATCH /auth/users/${name} ${JSON.stringify(body)}: ${show(r)}`);
  return r;
}
export const apiDisable = (srv, name, from) => apiPatchUser(srv, name, { disabled: true }, from);
export const apiSetRole = (srv, name, role, from) => apiPatchUser(srv, name, { role }, from);
