// Abuse limits (issue 4, "Abuse limits" and "Brute force"): invalid keys and bad passwords
// from one IP are throttled (429 + Retry-After) while other IPs are unaffected; checking a key
// with an existing id and a wrong secret takes about as long as one with an unknown id (no
// timing oracle on key ids); a valid key is rate-limited per key; a user cannot queue more
// than its role's limit.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  startAuthServer, assertCleanStop, hreq, hget, errType, show, makeUser, login, freshIp,
  PASSWORD, ms, sleep,
} from './auth_helpers.mjs';
import { slowPrompt } from './helpers.mjs';

const MAX_TRIES = 300;

function retryAfterOk(r) {
  const v = r.headers['retry-after'];
  return v !== undefined && /^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 3600;
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
/** A well-formed key (12-character base32 id, canonical base64url 32-byte secret) that no
 * server issued, or with the given id. */
const randomKey = (id = Array.from(randomBytes(12), (b) => B32[b & 31]).join('')) =>
  `weft_${id}_${randomBytes(32).toString('base64url')}`;

const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

describe('auth brute force and limits', { timeout: ms(300000) }, () => {
  let srv;
  let u;
  before(async () => {
    srv = await startAuthServer();
    u = await makeUser(srv, 'b_user', 'user');
  });
  after(async () => { if (srv) await assertCleanStop(assert, srv); });

  test('invalid keys from one IP become 429 with Retry-After; other IPs are unaffected', async () => {
    const ip = freshIp();
    let first429 = -1;
    let r;
    const statuses = new Map();
    for (let i = 0; i < MAX_TRIES; i++) {
      r = await hget(srv, '/system_stats', { key: randomKey(), from: ip });
      statuses.set(r.status, (statuses.get(r.status) || 0) + 1);
      if (r.status === 429) { first429 = i; break; }
      assert.equal(r.status, 401, `attempt ${i}: ${show(r)}`);
    }
    assert.ok(first429 >= 1, `throttled within ${MAX_TRIES} invalid keys (statuses ${JSON.stringify([...statuses])})`);
    assert.ok(retryAfterOk(r), `Retry-After on the 429: ${JSON.stringify(r.headers['retry-after'])}`);
    assert.ok(['rate_limited', 'throttled', 'too_many_requests'].includes(errType(r)) || errType(r), show(r));
    console.log(`# invalid keys: throttled after ${first429} failures from one IP, Retry-After ${r.headers['retry-after']} s`);
    // Still throttled: more invalid keys are refused without verification.
    const again = await hget(srv, '/system_stats', { key: 'weft_abc_def', from: ip });
    assert.equal(again.status, 429, show(again));
    // A valid key from the throttled IP: whatever the server does, say it (and it must be 200 or 429).
    const valid = await hget(srv, '/system_stats', { key: u.key, from: ip });
    assert.ok(valid.status === 200 || valid.status === 429, `valid key from a throttled IP: ${show(valid)}`);
    console.log(`# valid key from a throttled IP: ${valid.status}${valid.status === 429 ? ' (Retry-After ' + valid.headers['retry-after'] + ')' : ''}`);
    // Another IP is not affected.
    const other = await hget(srv, '/system_stats', { key: u.key, from: freshIp() });
    assert.equal(other.status, 200, show(other));
    // No credential at all from the throttled IP is still a plain 401 (or 429): never 200.
    const none = await hget(srv, '/system_stats', { from: ip });
    assert.ok(none.status === 401 || none.status === 429, show(none));
  });

  test('bad passwords from one IP become 429; the right password is then refused too', async () => {
    const ip = freshIp();
    let first429 = -1;
    let r;
    for (let i = 0; i < MAX_TRIES; i++) {
      r = await hreq(srv, 'POST', '/auth/login', { body: { username: 'b_user', password: `wrong-${i}-password` }, from: ip });
      if (r.status === 429) { first429 = i; break; }
      assert.equal(r.status, 401, `attempt ${i}: ${show(r)}`);
      assert.equal(errType(r), 'invalid_credentials', show(r));
    }
    assert.ok(first429 >= 1, `login throttled within ${MAX_TRIES} bad passwords`);
    assert.ok(retryAfterOk(r), `Retry-After: ${JSON.stringify(r.headers['retry-after'])}`);
    assert.equal(r.headers['set-cookie'], undefined);
    console.log(`# bad passwords: throttled after ${first429} failures from one IP, Retry-After ${r.headers['retry-after']} s`);
    // While throttled the password is not even checked, or guessing would go on behind the 429s.
    const right = await login(srv, 'b_user', PASSWORD, { allowFail: true, from: ip });
    assert.equal(right.status, 429, `the right password from a throttled IP: ${show(right.r)}`);
    assert.equal(right.cookie, null);
    // Elsewhere the account is fine (per-IP throttle: an attacker cannot lock the user out).
    const elsewhere = await login(srv, 'b_user', PASSWORD, { from: freshIp() });
    assert.equal(elsewhere.status, 200);
  });

  test('unknown users and wrong passwords look the same', async () => {
    const a = await hreq(srv, 'POST', '/auth/login', { body: { username: 'b_user', password: 'nope-nope-nope' }, from: freshIp() });
    const b = await hreq(srv, 'POST', '/auth/login', { body: { username: 'b_nobody', password: 'nope-nope-nope' }, from: freshIp() });
    assert.equal(a.status, 401);
    assert.equal(b.status, 401);
    assert.deepEqual(a.json, b.json, 'the same error body for both');
  });

  test('timing: an existing key id with a wrong secret vs an unknown id', async () => {
    // Both well-formed (a 12-character base32 id, a canonical base64url secret of 32 bytes),
    // so neither is refused on its shape alone.
    const id = u.key.split('_')[1];
    const wrong = () => randomKey(id);
    const unknown = () => randomKey();
    const tKnown = [];
    const tUnknown = [];
    // Warm-up, then interleave so drift hits both series alike; every sample from a fresh
    // address so the per-IP throttle never answers instead of the verifier.
    await hget(srv, '/system_stats', { key: wrong(), from: freshIp() });
    await hget(srv, '/system_stats', { key: unknown(), from: freshIp() });
    const N = 24;
    for (let i = 0; i < N; i++) {
      const order = i % 2 ? ['k', 'u'] : ['u', 'k'];
      for (const o of order) {
        const r = await hget(srv, '/system_stats', { key: o === 'k' ? wrong() : unknown(), from: freshIp() });
        assert.equal(r.status, 401, show(r));
        (o === 'k' ? tKnown : tUnknown).push(r.ms);
      }
    }
    const mk = mean(tKnown);
    const mu = mean(tUnknown);
    const bound = Math.max(10, 0.5 * Math.max(mk, mu));
    console.log(`# 401 time: existing id + wrong secret mean ${mk.toFixed(2)} ms (median ${median(tKnown).toFixed(2)}), ` +
      `unknown id mean ${mu.toFixed(2)} ms (median ${median(tUnknown).toFixed(2)}); bound ${bound.toFixed(1)} ms`);
    assert.ok(Math.abs(mk - mu) < bound,
      `an existing id must not answer measurably slower or faster than an unknown one: ${mk.toFixed(2)} vs ${mu.toFixed(2)} ms`);
  });

  test('timing: a wrong password vs an unknown user name', async () => {
    const tKnown = [];
    const tUnknown = [];
    const N = 12;
    for (let i = 0; i < N; i++) {
      for (const o of i % 2 ? ['k', 'u'] : ['u', 'k']) {
        const username = o === 'k' ? 'b_user' : `b_nobody${i}`;
        const r = await hreq(srv, 'POST', '/auth/login', { body: { username, password: `nope-${i}-nope-nope` }, from: freshIp() });
        assert.equal(r.status, 401, show(r));
        (o === 'k' ? tKnown : tUnknown).push(r.ms);
      }
    }
    const mk = mean(tKnown);
    const mu = mean(tUnknown);
    const bound = Math.max(10, 0.5 * Math.max(mk, mu));
    console.log(`# login 401 time: existing user mean ${mk.toFixed(2)} ms, unknown user mean ${mu.toFixed(2)} ms; bound ${bound.toFixed(1)} ms`);
    assert.ok(Math.abs(mk - mu) < bound, `user names must not be enumerable by timing: ${mk.toFixed(2)} vs ${mu.toFixed(2)} ms`);
  });

  test('a valid key is rate-limited per key (429 + Retry-After), not per connection', async () => {
    const k = await makeUser(srv, 'b_burst', 'user');
    const total = 4000;
    const conc = 32;
    let sent = 0;
    const seen = new Map();
    let limited = null;
    const worker = async () => {
      while (sent < total && !limited) {
        sent++;
        const r = await hget(srv, '/system_stats', { key: k.key, from: freshIp() });
        seen.set(r.status, (seen.get(r.status) || 0) + 1);
        if (r.status === 429) limited = r;
        else assert.equal(r.status, 200, show(r));
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: conc }, worker));
    const secs = (performance.now() - t0) / 1000;
    console.log(`# one key from many IPs: ${sent} requests in ${secs.toFixed(1)} s, statuses ${JSON.stringify([...seen])}`);
    assert.ok(limited, `no 429 for one key after ${sent} requests in ${secs.toFixed(1)} s (${(sent / secs).toFixed(0)}/s)`);
    assert.ok(retryAfterOk(limited), `Retry-After: ${JSON.stringify(limited.headers['retry-after'])}`);
    // Another key of the same server is not limited.
    const other = await hget(srv, '/system_stats', { key: u.key, from: freshIp() });
    assert.equal(other.status, 200, show(other));
  });

  test('max queued prompts per user: beyond the role limit → 429', async () => {
    const q = await makeUser(srv, 'b_queue', 'user');
    const ids = [];
    let refused = null;
    for (let i = 0; i < 60 && !refused; i++) {
      const r = await hreq(srv, 'POST', '/prompt', { key: q.key, body: { prompt: slowPrompt({ prefix: `bq${i}`, size: 64, batch: 1, steps: 2, color: i }) } });
      if (r.status === 200) ids.push(r.json.prompt_id);
      else refused = r;
    }
    try {
      assert.ok(refused, 'a user cannot queue 60 prompts (role limit 20)');
      assert.equal(refused.status, 429, show(refused));
      assert.ok(ids.length >= 5 && ids.length <= 40, `queued ${ids.length} before the limit`);
      console.log(`# max queued: ${ids.length} accepted, then ${refused.status} ${errType(refused)}`);
    } finally {
      await hreq(srv, 'POST', '/queue', { key: q.key, body: { delete: ids } });
      await hreq(srv, 'POST', '/interrupt', { key: q.key, body: {} });
    }
  });
});
