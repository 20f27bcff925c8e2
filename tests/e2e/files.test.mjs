// Uploads, /view and the file-serving guarantees of `weft serve`: multipart edge cases,
// collision handling, types and subfolders, and traversal attempts (../, encoded, absolute,
// symlinks) on /view, /upload and /userdata -- all refused, nothing created outside the base
// dir, and uploaded HTML/SVG never served as something a browser would run.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startServer, get, post, req, isJsonError, form, rawMultipart, rawRequest, makePng, ms,
  PNG_SIGNATURE, assertCleanStop,
} from './helpers.mjs';

const TOKEN = 'weftevil' + Math.random().toString(36).slice(2, 10);
const PNG_A = makePng(2, 2, [255, 0, 0]);
const PNG_B = makePng(2, 2, [0, 255, 0]);
const PNG_C = makePng(3, 1, [0, 0, 255]);

const upload = (srv, fields, files, u = '/upload/image') => post(srv, u, form(fields, files));
const img = (filename, data = PNG_A, field = 'image') => [{ field, filename, data }];

function assert4xx(r, what) {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: expected 4xx, got ${r.status} ${String(r.text).slice(0, 200)}`);
  const t = Buffer.isBuffer(r.body) ? r.body.toString('latin1') : r.bytes ? r.bytes.toString('latin1') : String(r.text);
  assert.ok(!t.includes('root:x:0:0'), `${what}: leaked /etc/passwd`);
  assert.ok(!t.includes('SQLite format 3'), `${what}: leaked the database`);
}

// Every path under dir whose name contains TOKEN.
function findToken(dir, depth = 6) {
  const hits = [];
  const walk = (d, n) => {
    let ents;
    try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of ents) {
      const p = path.join(d, e.name);
      if (e.name.includes(TOKEN)) hits.push(p);
      if (e.isDirectory() && !e.isSymbolicLink() && n > 0) walk(p, n - 1);
    }
  };
  walk(dir, depth);
  return hits;
}

// Files named after TOKEN anywhere they should not be: under the temp root (which holds the
// base dir), directly in the temp dir or in /. The one harmless literal name that the upload test
// may store inside input/ is allowed.
function strayIn(root, B) {
  return [...findToken(root, 8), ...findToken(os.tmpdir(), 0), ...findToken('/', 0)]
    .filter((p) => !(p.startsWith(path.join(B, 'input') + path.sep) && path.basename(p) === `%2e%2e%2f${TOKEN}.png`));
}

describe('files', { timeout: ms(180000) }, () => {
  let srv;
  let B; // base dir
  let outside; // a directory next to the base dir, outside it
  let fakeEtc;
  const stray = () => strayIn(srv.root, B);
  before(async () => {
    srv = await startServer();
    B = srv.baseDir;
    outside = path.join(srv.root, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'secret.png'), PNG_C);
    // A stand-in for /etc, so that a server bug can never damage the real one.
    fakeEtc = path.join(srv.root, 'fakeetc');
    fs.mkdirSync(fakeEtc);
    fs.writeFileSync(path.join(fakeEtc, 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  });
  after(async () => {
    if (srv) await srv.stop();
    // Never leave a stray file behind if a traversal succeeded.
    for (const d of ['/', os.tmpdir(), '/etc']) {
      for (const p of findToken(d, 0)) fs.rmSync(p, { recursive: true, force: true });
    }
  });

  test('upload: basic, /api twin, duplicate content keeps the name, different content is "name (1).png"', async () => {
    let r = await upload(srv, {}, img('a.png', PNG_A));
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { name: 'a.png', subfolder: '', type: 'input' });
    assert.deepEqual(fs.readFileSync(path.join(B, 'input/a.png')), PNG_A);
    r = await upload(srv, {}, img('a.png', PNG_A), '/api/upload/image');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.name, 'a.png', 'identical content: the existing file is reused');
    r = await upload(srv, {}, img('a.png', PNG_B));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.name, 'a (1).png');
    r = await upload(srv, {}, img('a.png', PNG_C));
    assert.equal(r.json.name, 'a (2).png');
    r = await upload(srv, {}, img('a.png', PNG_B));
    assert.equal(r.json.name, 'a (1).png', 'matches the existing "a (1).png"');
    assert.deepEqual(fs.readdirSync(path.join(B, 'input')).filter((f) => f.startsWith('a')).sort(), ['a (1).png', 'a (2).png', 'a.png']);
    assert.deepEqual(fs.readFileSync(path.join(B, 'input/a (1).png')), PNG_B);
    assert.deepEqual(fs.readFileSync(path.join(B, 'input/a (2).png')), PNG_C);
  });

  test('upload: overwrite=true / 1 replaces in place', async () => {
    let r = await upload(srv, { overwrite: 'true' }, img('a.png', PNG_C));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.name, 'a.png');
    assert.deepEqual(fs.readFileSync(path.join(B, 'input/a.png')), PNG_C);
    r = await upload(srv, { overwrite: '1' }, img('a.png', PNG_A));
    assert.equal(r.json.name, 'a.png');
    assert.deepEqual(fs.readFileSync(path.join(B, 'input/a.png')), PNG_A);
    r = await upload(srv, { overwrite: 'false' }, img('a.png', PNG_B));
    assert.equal(r.json.name, 'a (1).png');
  });

  test('upload: subfolder, type temp/output, /view of each', async () => {
    let r = await upload(srv, { subfolder: 'sub/dir' }, img('s.png', PNG_B));
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { name: 's.png', subfolder: 'sub/dir', type: 'input' });
    assert.deepEqual(fs.readFileSync(path.join(B, 'input/sub/dir/s.png')), PNG_B);
    r = await upload(srv, { type: 'temp' }, img('t.png', PNG_C));
    assert.deepEqual(r.json, { name: 't.png', subfolder: '', type: 'temp' });
    assert.deepEqual(fs.readFileSync(path.join(B, 'temp/t.png')), PNG_C);
    r = await upload(srv, { type: 'output', subfolder: 'o' }, img('o.png', PNG_A));
    assert.deepEqual(r.json, { name: 'o.png', subfolder: 'o', type: 'output' });
    assert.deepEqual(fs.readFileSync(path.join(B, 'output/o/o.png')), PNG_A);

    const views = [
      ['/view?filename=s.png&subfolder=sub/dir&type=input', PNG_B],
      ['/api/view?filename=s.png&subfolder=sub%2Fdir&type=input', PNG_B],
      ['/view?filename=t.png&type=temp', PNG_C],
      ['/view?filename=o.png&subfolder=o', PNG_A],
      ['/view?filename=o.png%20%5Boutput%5D&subfolder=o&type=input', PNG_A],
      ['/view?filename=a%20(1).png&type=input', PNG_B],
    ];
    for (const [u, want] of views) {
      const v = await get(srv, u);
      assert.equal(v.status, 200, `${u}: ${v.text.slice(0, 200)}`);
      assert.match(v.headers.get('content-type'), /^image\/png/, u);
      assert.deepEqual(v.bytes, want, u);
      assert.match(v.headers.get('content-disposition') || '', /filename="?[^"]*\.png"?/, `${u} has Content-Disposition`);
    }
    assert.equal((await get(srv, '/view?filename=nope.png')).status, 404);
    assert.equal((await get(srv, '/view')).status, 404, 'no filename -> 404 (ComfyUI)');
    const bt = await get(srv, '/view?filename=a.png&type=models');
    assert.equal(bt.status, 400, 'an unknown type is 400');
  });

  test('upload: missing image part, empty filename, bad type, not multipart -> 400 JSON', async () => {
    const cases = [
      ['no image part', () => post(srv, '/upload/image', form({ type: 'input' }))],
      ['wrong field name', () => post(srv, '/upload/image', form({}, img('w.png', PNG_A, 'file')))],
      ['empty filename', () => {
        const m = rawMultipart([{ name: 'image', filename: '', type: 'image/png', data: PNG_A }]);
        return req(srv, 'POST', '/upload/image', m.body, { headers: { 'content-type': m.contentType } });
      }],
      ['bad type', () => post(srv, '/upload/image', form({ type: 'models' }, img('bt.png')))],
      ['JSON body', () => post(srv, '/upload/image', { image: 'x' })],
      ['no boundary', () => req(srv, 'POST', '/upload/image', 'abc', { headers: { 'content-type': 'multipart/form-data' } })],
      ['truncated multipart', () => {
        const m = rawMultipart([{ name: 'image', filename: 'tr.png', type: 'image/png', data: PNG_A }]);
        return req(srv, 'POST', '/upload/image', m.body.subarray(0, m.body.length - 40), { headers: { 'content-type': m.contentType } });
      }],
    ];
    for (const [what, f] of cases) {
      const r = await f();
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.ok(isJsonError(r), `${what}: JSON error body, got ${r.text.slice(0, 200)}`);
    }
    assert.ok(!fs.existsSync(path.join(B, 'input/bt.png')));
    assert.ok(!fs.existsSync(path.join(B, 'input/tr.png')), 'a truncated upload leaves no file');
  });

  test('upload: multipart edge cases (quoted boundary, CRLF-- inside data, lower-case headers, UTF-8 name, fields after the file)', async () => {
    const safeB = 'weft-b0undary';
    const tricky = Buffer.concat([PNG_A, Buffer.from(`\r\n--${safeB.slice(0, 5)}\r\n--\r\n\r\n`), Buffer.from([0, 255, 13, 10, 45, 45])]);
    const body = Buffer.concat([
      Buffer.from(`--${safeB}\r\ncontent-disposition: form-data; name="image"; filename="tricky.bin"\r\ncontent-type: application/octet-stream\r\n\r\n`),
      tricky,
      Buffer.from(`\r\n--${safeB}\r\nContent-Disposition: form-data; name="subfolder"\r\n\r\nedge\r\n--${safeB}--\r\n`),
    ]);
    let r = await req(srv, 'POST', '/upload/image', body, { headers: { 'content-type': `multipart/form-data; boundary="${safeB}"` } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { name: 'tricky.bin', subfolder: 'edge', type: 'input' });
    assert.deepEqual(fs.readFileSync(path.join(B, 'input/edge/tricky.bin')), tricky, 'bytes stored exactly');

    r = await upload(srv, {}, img('ümlaut ✓.png', PNG_B));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.name, 'ümlaut ✓.png');
    const v = await get(srv, `/view?type=input&filename=${encodeURIComponent('ümlaut ✓.png')}`);
    assert.equal(v.status, 200);
    assert.deepEqual(v.bytes, PNG_B);
  });

  test('upload/mask: merges into the referenced original', async () => {
    let r = await upload(srv, {}, img('orig.png', makePng(4, 4, [10, 20, 30])));
    assert.equal(r.status, 200, r.text);
    r = await post(srv, '/upload/mask', form({
      type: 'input', subfolder: 'clipspace',
      original_ref: JSON.stringify({ filename: 'orig.png', subfolder: '', type: 'input' }),
    }, img('mask.png', makePng(4, 4, [0, 0, 0, 128]))));
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { name: 'mask.png', subfolder: 'clipspace', type: 'input' });
    const f = fs.readFileSync(path.join(B, 'input/clipspace/mask.png'));
    assert.deepEqual(f.subarray(0, 8), PNG_SIGNATURE);
    assert.equal(f[25], 6, 'the merged image is RGBA (colour type 6)');
    const r2 = await post(srv, '/api/upload/mask', form({
      original_ref: JSON.stringify({ filename: '../../weft.db', type: 'input' }),
    }, img('mask2.png', makePng(4, 4, [0, 0, 0, 128]))));
    assert4xx(r2, 'mask with a traversing original_ref');
  });

  test('/view: traversal attempts (../, encoded, absolute, subfolder escapes, symlinks) are refused', async () => {
    fs.symlinkSync('/etc/passwd', path.join(B, 'output', 'link.png'));
    fs.symlinkSync('/etc', path.join(B, 'output', 'linkdir'));
    fs.symlinkSync(B, path.join(B, 'output', 'linkbase'));
    fs.symlinkSync(path.join(outside, 'secret.png'), path.join(B, 'input', 'secret.png'));
    assert.ok(fs.existsSync(path.join(B, 'weft.db')), 'the database lives at <base>/weft.db');
    const targets = [
      '/view?filename=../weft.db',
      '/view?filename=..%2Fweft.db',
      '/view?filename=%2e%2e%2fweft.db',
      '/view?filename=%2E%2E/weft.db',
      '/view?filename=..%5Cweft.db',
      '/view?filename=../../../../../../etc/passwd',
      '/view?filename=/etc/passwd',
      '/view?filename=%2Fetc%2Fpasswd',
      '/view?filename=passwd&subfolder=/etc',
      '/view?filename=passwd&subfolder=../../../../../../../etc',
      '/view?filename=passwd&subfolder=%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc',
      '/view?filename=weft.db&subfolder=..',
      '/view?filename=weft.db&subfolder=%2e%2e',
      '/view?filename=weft.db&subfolder=sub/../..',
      '/view?filename=a.png&subfolder=../input&type=output',
      '/view?filename=weft.db&type=..',
      '/view?filename=passwd&type=../../../../../../etc',
      '/view?filename=weft.db%00.png',
      '/view?filename=weft.db%20%5B..%5D',
      '/view?filename=link.png',
      '/view?filename=passwd&subfolder=linkdir',
      '/view?filename=weft.db&subfolder=linkbase',
      '/view?filename=secret.png&type=input',
      '/api/view?filename=..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd',
    ];
    for (const t of targets) {
      const r = await rawRequest(srv, 'GET', t);
      assert4xx(r, `GET ${t}`);
      if (t.includes('secret')) assert.ok(!r.body.equals(PNG_C), `${t} served a file outside the base dir`);
    }
    const ok = await get(srv, '/view?filename=o.png&subfolder=o');
    assert.equal(ok.status, 200, 'legitimate files are still served');
  });

  test('/upload: traversal in filename, subfolder and type is refused; nothing lands outside', async () => {
    fs.symlinkSync(outside, path.join(B, 'input', 'outlink'));
    const bad = [
      [{}, `../${TOKEN}.png`],
      [{}, `../../${TOKEN}.png`],
      [{}, `../../../${TOKEN}.png`],
      [{}, `/tmp/${TOKEN}.png`],
      [{}, `/${TOKEN}.png`],
      [{}, `sub/../../${TOKEN}.png`],
      [{}, '..'],
      [{}, '.'],
      [{ subfolder: `../${TOKEN}` }, 'x.png'],
      [{ subfolder: `../../${TOKEN}` }, 'x.png'],
      [{ subfolder: `/tmp/${TOKEN}` }, 'x.png'],
      [{ subfolder: `a/../../../${TOKEN}` }, 'x.png'],
      [{ subfolder: '..' }, `${TOKEN}.png`],
      [{ subfolder: 'outlink' }, `${TOKEN}.png`],
      [{ type: 'output', subfolder: '../input/..' }, `${TOKEN}.png`],
      [{ type: '../..' }, `${TOKEN}.png`],
      [{ type: '/tmp' }, `${TOKEN}.png`],
    ];
    for (const [fields, name] of bad) {
      const m = rawMultipart([
        ...Object.entries(fields).map(([k, v]) => ({ name: k, data: v })),
        { name: 'image', filename: name, type: 'image/png', data: PNG_A },
      ]);
      const r = await req(srv, 'POST', '/upload/image', m.body, { headers: { 'content-type': m.contentType } });
      assert4xx(r, `upload ${JSON.stringify(fields)} filename=${name}`);
    }
    // Multipart field values are not percent-decoded: this is an odd but harmless name.
    const m = rawMultipart([{ name: 'image', filename: `%2e%2e%2f${TOKEN}.png`, type: 'image/png', data: PNG_A }]);
    await req(srv, 'POST', '/upload/image', m.body, { headers: { 'content-type': m.contentType } });

    assert.deepEqual(stray(), [], 'no file created by a refused upload');
    assert.deepEqual(fs.readdirSync(outside), ['secret.png'], 'nothing written through a symlinked subfolder');
  });

  test('/userdata: traversal (encoded, double-encoded, absolute, symlink) is refused', async () => {
    let r = await post(srv, '/userdata/workflows%2Fkeep.json', '{"k":1}');
    assert.equal(r.status, 200, r.text);
    // Find where weft keeps user files to plant a symlink there.
    const found = [];
    const walk = (d) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory() && !e.isSymbolicLink()) walk(p);
        else if (e.name === 'keep.json') found.push(p);
      }
    };
    walk(B);
    assert.equal(found.length, 1, `keep.json stored once under the base dir: ${found}`);
    const userRoot = path.dirname(path.dirname(found[0]));
    fs.symlinkSync(fakeEtc, path.join(userRoot, 'etclink'));
    fs.symlinkSync(outside, path.join(userRoot, 'outlink'));

    const gets = [
      '/userdata/..%2F..%2Fweft.db',
      '/userdata/..%2F..%2F..%2Fweft.db',
      '/userdata/%2e%2e%2F%2e%2e%2Fweft.db',
      '/userdata/..%252F..%252Fweft.db',
      '/userdata/%252e%252e%252f%252e%252e%252fweft.db',
      '/userdata/%2Fetc%2Fpasswd',
      '/userdata/workflows%2F..%2F..%2F..%2Fweft.db',
      '/userdata/etclink%2Fpasswd',
      '/userdata/outlink%2Fsecret.png',
      '/userdata/../../weft.db',
      '/api/userdata/..%2F..%2Fweft.db',
      '/userdata?dir=..%2F..',
      '/userdata?dir=%2Fetc',
      '/userdata?dir=etclink',
      '/v2/userdata?path=..%2F..',
      '/v2/userdata?path=%2Fetc',
      '/v2/userdata?path=etclink',
    ];
    for (const t of gets) {
      r = await rawRequest(srv, 'GET', t);
      assert4xx(r, `GET ${t}`);
      assert.ok(!r.text.includes('passwd') || t.includes('passwd'), `GET ${t} listed /etc`);
    }
    const posts = [
      `/userdata/..%2F..%2F${TOKEN}.json`,
      `/userdata/..%2F..%2F..%2F${TOKEN}.json`,
      `/userdata/%2Ftmp%2F${TOKEN}.json`,
      `/userdata/workflows%2F..%2F..%2F..%2F..%2F${TOKEN}.json`,
      `/userdata/..%252F..%252F..%252F${TOKEN}.json`,
      `/userdata/outlink%2F${TOKEN}.json`,
      `/userdata/workflows%2Fkeep.json/move/..%2F..%2F..%2F${TOKEN}.json`,
      `/userdata/workflows%2Fkeep.json/move/%2Ftmp%2F${TOKEN}.json`,
      `/userdata/workflows%2Fkeep.json/move/outlink%2F${TOKEN}.json`,
      '/userdata/..%2F..%2Fweft.db/move/workflows%2Fstolen.db',
      '/userdata/etclink%2Fpasswd/move/workflows%2Fstolen.txt',
    ];
    for (const t of posts) {
      r = await rawRequest(srv, 'POST', t, { body: '{"evil":true}' });
      assert4xx(r, `POST ${t}`);
    }
    for (const t of ['/userdata/..%2F..%2Fweft.db', `/userdata/${encodeURIComponent(path.join(fakeEtc, 'passwd'))}`,
      '/userdata/etclink%2Fpasswd', '/userdata/outlink%2Fsecret.png']) {
      r = await rawRequest(srv, 'DELETE', t);
      assert4xx(r, `DELETE ${t}`);
    }
    assert.ok(fs.existsSync(path.join(B, 'weft.db')), 'the database is still there');
    assert.ok(fs.existsSync(path.join(fakeEtc, 'passwd')), 'nothing deleted through a symlink or an absolute path');
    assert.ok(fs.existsSync(path.join(outside, 'secret.png')));
    assert.equal((await get(srv, '/userdata/workflows%2Fkeep.json')).text, '{"k":1}', 'the move source is untouched');
    assert.equal((await get(srv, '/userdata/workflows%2Fstolen.db')).status, 404);
    assert.deepEqual(stray(), [], 'no file created by refused userdata requests');
    assert.deepEqual(fs.readdirSync(outside), ['secret.png']);
  });

  test('uploaded HTML and SVG are served as attachments, octet-stream, nosniff', async () => {
    const html = Buffer.from('<!doctype html><html><body><script>alert(document.cookie)</script></body></html>');
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>');
    for (const [name, data] of [['page.html', html], ['pic.svg', svg], ['page.xhtml', html], ['x.htm', html]]) {
      const r = await upload(srv, {}, [{ filename: name, data, type: name.endsWith('svg') ? 'image/svg+xml' : 'text/html' }]);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.name, name);
      for (const u of [`/view?filename=${name}&type=input`, `/api/view?filename=${name}&type=input`]) {
        const v = await get(srv, u);
        assert.equal(v.status, 200, u);
        assert.match(v.headers.get('content-type'), /^application\/octet-stream/, `${u} content-type`);
        assert.match(v.headers.get('content-disposition') || '', /^attachment/i, `${u} content-disposition`);
        assert.equal(v.headers.get('x-content-type-options'), 'nosniff', `${u} nosniff`);
        assert.deepEqual(v.bytes, data);
      }
    }
  });

  test('/ serves the frontend folder (--frontend), confined to it', async () => {
    const fe = path.join(srv.root, 'fe');
    fs.mkdirSync(path.join(fe, 'assets'), { recursive: true });
    fs.writeFileSync(path.join(fe, 'index.html'), '<!doctype html><title>weft editor</title>');
    fs.writeFileSync(path.join(fe, 'assets', 'app.js'), 'console.log(1);');
    fs.symlinkSync(fakeEtc, path.join(fe, 'etclink'));
    const f = await startServer({ args: ['--frontend', fe] });
    try {
      const i = await get(f, '/');
      assert.equal(i.status, 200);
      assert.match(i.headers.get('content-type'), /^text\/html/);
      assert.equal(i.text, '<!doctype html><title>weft editor</title>');
      const js = await get(f, '/assets/app.js');
      assert.equal(js.status, 200);
      assert.match(js.headers.get('content-type'), /javascript/);
      assert.equal(js.text, 'console.log(1);');
      assert.equal((await get(f, '/assets/nope.js')).status, 404);
      const api = await get(f, '/api/prompt');
      assert.equal(api.status, 200, 'API routes still win over static files');
      for (const t of ['/../../../etc/passwd', '/assets/..%2F..%2F..%2Fetc%2Fpasswd', '/%2e%2e/%2e%2e/etc/passwd',
        '/etclink/passwd', '/..%2Fbase%2Fweft.db', '/%2Fetc%2Fpasswd']) {
        assert4xx(await rawRequest(f, 'GET', t), `GET ${t}`);
      }
    } finally {
      await assertCleanStop(assert, f);
    }
  });

  test('shuts down cleanly (exit 0)', async () => {
    const s = srv;
    srv = null;
    await assertCleanStop(assert, s);
  });
});
