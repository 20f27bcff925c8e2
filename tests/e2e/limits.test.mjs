// The HTTP layer under abuse: oversized bodies (413), malformed JSON, huge URLs and headers,
// 1,000 pipelined requests on one connection, 500 concurrent connections, slow clients that
// never finish their headers, garbage bytes, Expect: 100-continue, chunked bodies -- and the
// server stays healthy after all of it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  startServer, get, post, req, isJsonError, rawExchange, rawRequest, parseResponses, invertPrompt,
  waitHistory, form, rawMultipart, makePng, ms, withTimeout, assertCleanStop,
} from './helpers.mjs';

const jsonBody = (res) => {
  try { return JSON.parse(res.body.toString('utf8')); } catch { return undefined; }
};

function assertRawJsonError(res, status, what) {
  assert.equal(res.status, status, `${what}: got ${res.status} ${res.body ? res.body.toString().slice(0, 200) : ''}`);
  assert.match(res.headers['content-type'] || '', /^application\/json/, `${what}: JSON content type`);
  const j = jsonBody(res);
  assert.ok(j && typeof j === 'object' && 'error' in j, `${what}: JSON error body`);
}

describe('limits', { timeout: ms(240000) }, () => {
  let srv; // --max-upload-size 1
  before(async () => { srv = await startServer({ args: ['--max-upload-size', '1'] }); });
  after(async () => { if (srv) await srv.stop(); });

  test('oversized bodies -> 413 JSON (Content-Length, chunked, multipart), /features reports the limit', async () => {
    const f = await get(srv, '/features');
    assert.equal(f.json.max_upload_size, 1024 * 1024);

    const big = Buffer.alloc(2 * 1024 * 1024, 0x20);
    const r1 = await rawExchange(srv.port, [
      Buffer.from(`POST /prompt HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n`),
      big,
    ]);
    const [res1] = parseResponses(r1.data);
    assert.ok(res1, `a response arrived: ${r1.data.toString().slice(0, 200)} ${r1.error}`);
    assertRawJsonError(res1, 413, 'Content-Length over the limit');

    const chunk = Buffer.alloc(256 * 1024, 0x20);
    const parts = [Buffer.from('POST /api/prompt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n')];
    for (let i = 0; i < 8; i++) parts.push(Buffer.from(chunk.length.toString(16) + '\r\n'), chunk, Buffer.from('\r\n'));
    parts.push(Buffer.from('0\r\n\r\n'));
    const r2 = await rawExchange(srv.port, parts);
    const [res2] = parseResponses(r2.data);
    assert.ok(res2, 'a response arrived for the chunked body');
    assertRawJsonError(res2, 413, 'chunked body over the limit');

    // The server may answer before the whole body is sent; read what came back on the raw socket.
    const m = rawMultipart([{ name: 'image', filename: 'huge.png', type: 'image/png', data: Buffer.alloc(3 * 1024 * 1024, 1) }]);
    const r3 = await rawExchange(srv.port, [
      Buffer.from(`POST /upload/image HTTP/1.1\r\nHost: x\r\nContent-Type: ${m.contentType}\r\nContent-Length: ${m.body.length}\r\n\r\n`),
      m.body,
    ]);
    const [res3] = parseResponses(r3.data);
    assert.ok(res3, 'a response arrived for the big upload');
    assertRawJsonError(res3, 413, 'multipart upload over the limit');
    assert.ok(!fs.existsSync(path.join(srv.baseDir, 'input', 'huge.png')), 'nothing stored');
    const s = await get(srv, '/system_stats');
    assert.equal(s.status, 200);
  });

  test('a body just under the limit is accepted', async () => {
    const p = invertPrompt({ prefix: 'lim_pad' });
    p['1']._meta = { title: 'x'.repeat(900 * 1024) };
    const r = await post(srv, '/prompt', { prompt: p });
    assert.equal(r.status, 200, r.text.slice(0, 300));
    await waitHistory(srv, r.json.prompt_id);
  });

  test('malformed JSON -> 400 JSON on every JSON route', async () => {
    for (const [u, body] of [['/prompt', '{"prompt": '], ['/api/prompt', '\u0000\u0001'], ['/prompt', '{"prompt": {}} trailing'],
      ['/queue', '{clear: true}'], ['/history', '[1,'], ['/free', 'nope'], ['/prompt', '{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 1e999999}}}}']]) {
      const r = await post(srv, u, body, { headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, 400, `${u} ${JSON.stringify(body)} -> ${r.status} ${r.text.slice(0, 200)}`);
      assert.ok(isJsonError(r), `${u}: JSON error body: ${r.text.slice(0, 200)}`);
    }
    const deep = '['.repeat(100000) + ']'.repeat(100000);
    const r = await post(srv, '/prompt', `{"prompt": ${deep}}`);
    assert.equal(r.status, 400, 'deeply nested JSON is refused, not a stack overflow');
  });

  test('URL and header limits: 414 / 431, JSON', async () => {
    const longUrl = '/prompt?x=' + 'a'.repeat(16 * 1024);
    const r1 = await rawRequest(srv, 'GET', longUrl);
    assertRawJsonError(r1, 414, 'URL over 8 KiB');
    const r2 = await rawRequest(srv, 'GET', '/prompt', { headers: { 'X-Big': 'b'.repeat(40 * 1024) } });
    assertRawJsonError(r2, 431, 'headers over 32 KiB');
    const many = {};
    for (let i = 0; i < 2000; i++) many[`X-H${i}`] = 'v'.repeat(16);
    const r3 = await rawRequest(srv, 'GET', '/prompt', { headers: many });
    assertRawJsonError(r3, 431, '2,000 headers');
  });

  test('1,000 pipelined requests on one connection: 1,000 responses in order', async () => {
    // Mostly GET /prompt, with a recognisable response every 7th request to check the order.
    const classes = ['EmptyImage', 'ImageInvert', 'SaveImage', 'ImageScale'];
    const expect = [];
    let wire = '';
    for (let i = 0; i < 1000; i++) {
      if (i % 7 === 3) {
        const c = classes[i % classes.length];
        wire += `GET /object_info/${c}?clientId=p HTTP/1.1\r\nHost: x\r\n\r\n`;
        expect.push(c);
      } else {
        wire += `GET /prompt HTTP/1.1\r\nHost: x\r\n\r\n`;
        expect.push('prompt');
      }
    }
    const got = await new Promise((resolve, reject) => {
      const sock = net.connect({ port: srv.port, host: '127.0.0.1' });
      let buf = Buffer.alloc(0);
      const timer = setTimeout(() => { sock.destroy(); resolve(parseResponses(buf)); }, ms(30000));
      sock.on('connect', () => sock.write(wire));
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length > 100 && buf.subarray(-64).includes('}')) {
          const rs = parseResponses(buf);
          if (rs.length >= 1000) { clearTimeout(timer); sock.destroy(); resolve(rs); }
        }
      });
      sock.on('error', reject);
      sock.on('close', () => { clearTimeout(timer); resolve(parseResponses(buf)); });
    });
    assert.equal(got.length, 1000, `responses received: ${got.length}`);
    got.forEach((res, i) => {
      assert.equal(res.status, 200, `response ${i}`);
      const j = jsonBody(res);
      if (expect[i] === 'prompt') assert.ok(j && j.exec_info, `response ${i} is GET /prompt's: ${res.body.toString().slice(0, 80)}`);
      else assert.deepEqual(Object.keys(j), [expect[i]], `response ${i} is /object_info/${expect[i]}'s`);
    });
  });

  test('500 concurrent connections are each answered', async () => {
    const N = 500;
    const socks = [];
    try {
      await withTimeout(Promise.all(Array.from({ length: N }, () => new Promise((resolve, reject) => {
        const s = net.connect({ port: srv.port, host: '127.0.0.1' }, () => resolve());
        s.on('error', reject);
        socks.push(s);
      }))), ms(20000), '500 connects');
      const answers = await withTimeout(Promise.all(socks.map((s) => new Promise((resolve) => {
        let buf = Buffer.alloc(0);
        s.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          const rs = parseResponses(buf);
          if (rs.length) resolve(rs[0].status);
        });
        s.on('close', () => resolve(0));
        s.write('GET /system_stats HTTP/1.1\r\nHost: x\r\n\r\n');
      }))), ms(60000), '500 answers');
      const bad = answers.filter((st) => st !== 200).length;
      assert.equal(bad, 0, `${bad} of ${N} connections were not answered 200`);
    } finally {
      for (const s of socks) s.destroy();
    }
  });

  test('connection cap: beyond 1,024 connections new ones are closed at once; service resumes', async () => {
    const N = 1100;
    const socks = [];
    let closedEarly = 0;
    try {
      await withTimeout(Promise.all(Array.from({ length: N }, () => new Promise((resolve) => {
        const s = net.connect({ port: srv.port, host: '127.0.0.1' }, () => resolve());
        s.on('error', () => resolve());
        s.on('close', () => { closedEarly++; resolve(); });
        socks.push(s);
      }))), ms(20000), `${N} connects`);
      await new Promise((r) => setTimeout(r, ms(1500)));
      assert.ok(closedEarly >= N - 1024, `connections over the cap are closed: ${closedEarly} of ${N} closed`);
      assert.ok(closedEarly <= N - 1000, `connections under the cap stay open: ${closedEarly} of ${N} closed`);
    } finally {
      for (const s of socks) s.destroy();
    }
    await new Promise((r) => setTimeout(r, 200));
    const ok = await get(srv, '/system_stats');
    assert.equal(ok.status, 200, 'served again once connections are released');
  });

  test('slow clients are disconnected within the header timeout; garbage gets 400 and close', async (t) => {
    const limit = ms(15000);
    // Half a request line, then silence.
    const half = rawExchange(srv.port, ['GET /prom'], { timeoutMs: limit + ms(5000) });
    // A slowloris: one header byte per second, forever.
    const loris = new Promise((resolve) => {
      const t0 = performance.now();
      const s = net.connect({ port: srv.port, host: '127.0.0.1' });
      let data = '';
      let iv;
      const done = (closed) => { clearInterval(iv); clearTimeout(hard); s.destroy(); resolve({ closed, ms: performance.now() - t0, data }); };
      const hard = setTimeout(() => done(false), limit + ms(5000));
      s.on('connect', () => {
        s.write('GET /prompt HTTP/1.1\r\nX-Slow: ');
        iv = setInterval(() => { if (!s.destroyed) s.write('a'); }, 1000);
      });
      s.on('data', (d) => { data += d; });
      s.on('error', () => {});
      s.on('close', () => done(true));
    });
    // Meanwhile other clients are served normally.
    const ok = await get(srv, '/prompt');
    assert.equal(ok.status, 200);

    const g = await rawExchange(srv.port, [Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01]), 'garbage\r\n\r\n'], { timeoutMs: ms(5000) });
    assert.ok(g.closed, 'the server closes the connection after garbage');
    const [gr] = parseResponses(g.data);
    assert.ok(gr, `a 400 response before the close: ${JSON.stringify(g.data.toString('latin1').slice(0, 100))}`);
    assert.equal(gr.status, 400);
    const bad = await rawExchange(srv.port, ['GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'], { timeoutMs: ms(5000) });
    assert.ok(bad.closed);
    assert.equal(parseResponses(bad.data)[0]?.status, 400, 'a bad Content-Length is 400');

    const [h, l] = await Promise.all([half, loris]);
    t.diagnostic(`half request line closed after ${Math.round(h.ms)} ms, slowloris after ${Math.round(l.ms)} ms`);
    assert.ok(h.closed, `half a request line: still open after ${Math.round(h.ms)} ms`);
    assert.ok(h.ms <= limit, `half a request line: closed after ${Math.round(h.ms)} ms (limit ${limit})`);
    assert.ok(l.closed, `slowloris: still open after ${Math.round(l.ms)} ms`);
    assert.ok(l.ms <= limit, `slowloris: closed after ${Math.round(l.ms)} ms (limit ${limit})`);
  });

  test('Expect: 100-continue and chunked request bodies', async () => {
    const body = JSON.stringify({ prompt: invertPrompt({ prefix: 'lim_expect' }) });
    const res = await new Promise((resolve) => {
      const s = net.connect({ port: srv.port, host: '127.0.0.1' });
      let buf = Buffer.alloc(0);
      let sent = false;
      const timer = setTimeout(() => { s.destroy(); resolve({ buf, sent }); }, ms(10000));
      s.on('connect', () => s.write(`POST /prompt HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`));
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (!sent && buf.toString('latin1').startsWith('HTTP/1.1 100')) { sent = true; s.write(body); }
        const rs = parseResponses(buf);
        if (rs.length >= 2 || (rs.length === 1 && rs[0].status !== 100)) { clearTimeout(timer); s.destroy(); resolve({ buf, sent, rs }); }
      });
      s.on('error', () => {});
    });
    assert.ok(res.sent, `100 Continue arrived before the body: ${res.buf.toString('latin1').slice(0, 100)}`);
    const final = res.rs.at(-1);
    assert.equal(final.status, 200, final.body.toString());
    await waitHistory(srv, jsonBody(final).prompt_id);

    const b = Buffer.from(JSON.stringify({ prompt: invertPrompt({ prefix: 'lim_chunked' }) }));
    const cut = [0, 5, 17, b.length];
    let wire = 'POST /api/prompt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
    for (let i = 0; i + 1 < cut.length; i++) {
      const piece = b.subarray(cut[i], cut[i + 1]);
      wire += piece.length.toString(16) + ';ext=1\r\n' + piece.toString('latin1') + '\r\n';
    }
    wire += '0\r\nX-Trailer: t\r\n\r\n';
    const c = await rawExchange(srv.port, [Buffer.from(wire, 'latin1')]);
    const [cr] = parseResponses(c.data);
    assert.equal(cr?.status, 200, c.data.toString().slice(0, 300));
    await waitHistory(srv, jsonBody(cr).prompt_id);
  });

  test('keep-alive: many requests on one connection, HTTP/1.0 closes', async () => {
    const agentless = [];
    for (let i = 0; i < 50; i++) agentless.push(`GET /features HTTP/1.1\r\nHost: x\r\n\r\n`);
    agentless.push('GET /features HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const r = await rawExchange(srv.port, [agentless.join('')]);
    assert.ok(r.closed, 'Connection: close closes');
    assert.equal(parseResponses(r.data).length, 51);
    const h10 = await rawExchange(srv.port, ['GET /features HTTP/1.0\r\n\r\n']);
    assert.ok(h10.closed, 'HTTP/1.0 without keep-alive closes');
    assert.equal(parseResponses(h10.data)[0]?.status, 200);
  });

  test('still healthy after all of it, then a clean exit', async () => {
    const s = await get(srv, '/system_stats');
    assert.equal(s.status, 200);
    assert.ok(s.json.system);
    const up = await post(srv, '/upload/image', form({}, [{ filename: 'small.png', data: makePng(2, 2) }]));
    assert.equal(up.status, 200, up.text);
    const r = await req(srv, 'GET', '/prompt');
    assert.deepEqual(r.json, { exec_info: { queue_remaining: 0 } });
    const x = srv;
    srv = null;
    await assertCleanStop(assert, x);
  });
});
