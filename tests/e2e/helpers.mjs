// Shared helpers for the end-to-end tests of `weft serve`: start the real binary on an
// ephemeral port with a temporary base dir, talk HTTP (fetch and raw sockets) and WebSocket
// to it, and build the workflows the tests submit. Every wait here is bounded.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const WEFT_BIN = process.env.WEFT_BIN
  ? path.resolve(process.env.WEFT_BIN)
  : path.resolve(here, '../../build-asan/weft');

// Sanitizer builds are slow to start and to run nodes; scale every timeout by this.
export const SLOW = Number(process.env.WEFT_E2E_TIMEOUT_SCALE || 1);
export const ms = (n) => Math.round(n * SLOW);

export const sleep = (n) => new Promise((r) => setTimeout(r, n));

/** A fresh temporary directory; the caller removes it (see tmpRoot().cleanup). */
export function tmpRoot(tag = 'weft-e2e-') {
  const dir = mkdtempSync(path.join(os.tmpdir(), tag));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

// Every process we spawn, so that a failing test never leaves a server behind.
const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/**
 * Starts `weft serve --port 0 --base-dir DIR [...args]` and waits for its
 * "weft: listening on http://HOST:PORT" line.
 * opts.baseDir: reuse a directory (kept on stop); otherwise a temp dir removed by stop().
 * Returns {url, host, port, baseDir, proc, stdout(), stderr(), exited, stop(), kill9()}.
 */
export async function startServer(opts = {}) {
  const { args = [], timeoutMs = ms(20000), env = {} } = opts;
  let root = null;
  let baseDir = opts.baseDir;
  if (!baseDir) {
    root = tmpRoot();
    baseDir = path.join(root.dir, 'base');
  }
  if (!existsSync(WEFT_BIN)) throw new Error(`WEFT_BIN not found: ${WEFT_BIN}`);
  const t0 = performance.now();
  const proc = spawn(WEFT_BIN, ['serve', '--port', '0', '--base-dir', baseDir, '--no-auth', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  live.add(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err += d; if (process.env.WEFT_E2E_VERBOSE) process.stderr.write(d); });
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => { live.delete(proc); resolve({ code, signal }); });
  });
  const ready = new Promise((resolve, reject) => {
    const onData = (d) => {
      out += d;
      const m = out.match(/weft: listening on (http:\/\/(\[[^\]]+\]|[^\s:/]+):(\d+))/);
      if (m) resolve({ url: m[1], host: m[2], port: Number(m[3]) });
    };
    proc.stdout.on('data', onData);
    proc.on('error', reject);
    exited.then(({ code, signal }) =>
      reject(new Error(`weft serve exited before listening (code ${code}, signal ${signal})\n` +
        `stdout: ${out}\nstderr: ${err.slice(-4000)}`)));
  });
  let info;
  try {
    info = await withTimeout(ready, timeoutMs, 'weft serve did not print its listening line');
  } catch (e) {
    proc.kill('SIGKILL');
    await exited;
    if (root) root.cleanup();
    throw e;
  }
  const readyMs = performance.now() - t0;
  const srv = {
    ...info,
    baseDir,
    root: root ? root.dir : null,
    proc,
    pid: proc.pid,
    readyMs,
    exited,
    stdout: () => out,
    stderr: () => err,
    /** SIGTERM, wait (bounded), SIGKILL as a last resort. Resolves {code, signal, ms}. */
    async stop(waitMs = ms(15000), { keepDir = false } = {}) {
      const t = performance.now();
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
      return { ...res, ms: performance.now() - t };
    },
    async kill9() {
      proc.kill('SIGKILL');
      return exited;
    },
    cleanup() { if (root) root.cleanup(); },
  };
  return srv;
}

export async function withTimeout(promise, timeoutMs, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, t]);
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------ HTTP

/**
 * One request through fetch. body: an object/array (sent as JSON text, with
 * Content-Type only when opts.contentType is not false), a string, a Buffer or FormData.
 * Returns {status, headers, text, json, bytes}; json is undefined when the body is not JSON.
 */
export async function req(srv, method, urlPath, body, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  let payload;
  if (body === undefined || body === null) {
    payload = undefined;
  } else if (body instanceof FormData || Buffer.isBuffer(body) || typeof body === 'string') {
    payload = body;
  } else {
    payload = JSON.stringify(body);
    if (opts.contentType !== false) headers['content-type'] = 'application/json';
  }
  const res = await withTimeout(fetch(srv.url + urlPath, {
    method, headers, body: payload, redirect: 'manual',
  }), opts.timeoutMs || ms(15000), `${method} ${urlPath}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes.toString('utf8');
  let json;
  try { json = text.length ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json, bytes };
}

export const get = (srv, p, opts) => req(srv, 'GET', p, undefined, opts);
export const post = (srv, p, body, opts) => req(srv, 'POST', p, body, opts);
export const del = (srv, p, opts) => req(srv, 'DELETE', p, undefined, opts);

/** True when the value is a JSON error body: {"error": {...}} or {"error": "text"}. */
export function isJsonError(r) {
  const ct = r.headers.get ? r.headers.get('content-type') : r.headers['content-type'];
  return !!(ct && ct.startsWith('application/json') && r.json && typeof r.json === 'object' &&
    'error' in r.json);
}

/** Writes raw bytes on a new connection and collects everything until the server closes
 * (or timeoutMs). Resolves {data: Buffer, closed: bool, ms, error}. */
export function rawExchange(port, chunks, { timeoutMs = ms(10000), host = '127.0.0.1', endAfterWrite = false } = {}) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const parts = [];
    const sock = net.connect({ port, host });
    let done = false;
    let error = null;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ data: Buffer.concat(parts), closed, ms: performance.now() - t0, error });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('connect', () => {
      for (const c of Array.isArray(chunks) ? chunks : [chunks]) sock.write(c);
      if (endAfterWrite) sock.end();
    });
    sock.on('data', (d) => parts.push(d));
    sock.on('error', (e) => { error = e; });
    sock.on('close', () => finish(true));
  });
}

/** Parses consecutive HTTP/1.1 responses out of a buffer (Content-Length or chunked).
 * Returns [{status, headers, body: Buffer}], stopping at the first incomplete one. */
export function parseResponses(buf) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    const hdrEnd = buf.indexOf('\r\n\r\n', off);
    if (hdrEnd < 0) break;
    const head = buf.subarray(off, hdrEnd).toString('latin1').split('\r\n');
    const m = head[0].match(/^HTTP\/1\.[01] (\d{3})/);
    if (!m) throw new Error(`not an HTTP response at ${off}: ${JSON.stringify(head[0])}`);
    const headers = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    let p = hdrEnd + 4;
    const status = Number(m[1]);
    let body;
    if (status === 100 || status === 101 || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
      const parts = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p);
        if (le < 0) return out;
        const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
        p = le + 2;
        if (size === 0) {
          const te = buf.indexOf('\r\n', p);
          if (te < 0) return out;
          p = te + 2;
          break;
        }
        if (p + size + 2 > buf.length) return out;
        parts.push(buf.subarray(p, p + size));
        p += size + 2;
      }
      body = Buffer.concat(parts);
    } else {
      const len = Number(headers['content-length'] || 0);
      if (p + len > buf.length) break;
      body = buf.subarray(p, p + len);
      p += len;
    }
    out.push({ status, headers, body });
    off = p;
  }
  return out;
}

// ------------------------------------------------------------------ WebSocket

/** A WebSocket client that records every message: JSON text frames as {type, data},
 * binary frames as {type: '<binary>', event, payload}. */
export class WsClient {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiters = [];
    this.closed = null; // {code, reason} once closed
    ws.on('message', (d, isBinary) => {
      let m;
      if (isBinary) {
        const b = Buffer.from(d);
        m = { type: '<binary>', event: b.length >= 4 ? b.readUInt32BE(0) : -1, payload: b.subarray(4) };
      } else {
        try { m = JSON.parse(d.toString('utf8')); } catch { m = { type: '<invalid-json>', raw: d.toString('utf8') }; }
      }
      this.messages.push(m);
      this.wake();
    });
    ws.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; this.wake(); });
    ws.on('error', (e) => { this.error = e; this.wake(); });
  }

  static async connect(srv, query = '', { path: wsPath = '/ws', timeoutMs = ms(10000) } = {}) {
    const ws = new WebSocket(`ws://${srv.host}:${srv.port}${wsPath}${query ? '?' + query : ''}`);
    const c = new WsClient(ws);
    await withTimeout(new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_, res) => reject(new Error(`ws upgrade answered ${res.statusCode}`)));
    }), timeoutMs, `WebSocket connect ${wsPath}?${query}`);
    return c;
  }

  wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** Waits for the first message at index >= from matching pred; resolves {msg, index}. */
  async waitFor(pred, { from = 0, timeoutMs = ms(30000), what = 'message' } = {}) {
    const deadline = performance.now() + timeoutMs;
    let i = from;
    for (;;) {
      for (; i < this.messages.length; i++) {
        if (pred(this.messages[i])) return { msg: this.messages[i], index: i };
      }
      if (this.closed) throw new Error(`socket closed (${this.closed.code}) while waiting for ${what}`);
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}; got types: ` +
          JSON.stringify(this.messages.slice(from).map(summary).slice(-40)));
      }
      await new Promise((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => { clearTimeout(t); r(); });
      });
    }
  }

  /** Waits for `executing {node: null, prompt_id}`: the end of a prompt. */
  waitDone(promptId, opts = {}) {
    return this.waitFor((m) => m.type === 'executing' && m.data && m.data.node === null &&
      m.data.prompt_id === promptId, { what: `executing null for ${promptId}`, ...opts });
  }

  waitClose(timeoutMs = ms(10000)) {
    return withTimeout((async () => {
      while (!this.closed) await new Promise((r) => this.waiters.push(r));
      return this.closed;
    })(), timeoutMs, 'socket close');
  }

  /** Messages carrying this prompt id, in arrival order. */
  forPrompt(promptId) {
    return this.messages.filter((m) => m.data && m.data.prompt_id === promptId);
  }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }

  close() {
    try { this.ws.terminate(); } catch { /* closed */ }
  }
}

export function summary(m) {
  if (!m || !m.type) return String(m);
  if (m.type === 'executing' || m.type === 'executed') return `${m.type}:${m.data && m.data.node}`;
  return m.type;
}

// ------------------------------------------------------------------ prompts

/** workflows/invert.api.json with an optional filename prefix / colour / size. */
export function invertPrompt({ prefix, color, width, height } = {}) {
  const p = JSON.parse(readFileSync(path.join(REPO, 'workflows/invert.api.json'), 'utf8'));
  if (prefix !== undefined) p['3'].inputs.filename_prefix = prefix;
  if (color !== undefined) p['1'].inputs.color = color;
  if (width !== undefined) p['1'].inputs.width = width;
  if (height !== undefined) p['1'].inputs.height = height;
  return p;
}

/** A prompt that runs for seconds: EmptyImage, then a chain of lanczos up/down scales, then
 * SaveImage. The lanczos node checks for interrupts after each image of the batch.
 * Environment knobs: WEFT_E2E_SLOW_SIZE (default 512), WEFT_E2E_SLOW_STEPS (default 10). */
export function slowPrompt({ prefix = 'slow', size = Number(process.env.WEFT_E2E_SLOW_SIZE || 512),
  batch = 4, steps = Number(process.env.WEFT_E2E_SLOW_STEPS || 10), color = 0 } = {}) {
  const p = { 1: { class_type: 'EmptyImage', inputs: { width: size, height: size, batch_size: batch, color } } };
  let prev = '1';
  for (let i = 0; i < steps; i++) {
    const id = String(i + 2);
    const w = i % 2 === 0 ? size * 2 : size;
    p[id] = {
      class_type: 'ImageScale',
      inputs: { image: [prev, 0], upscale_method: 'lanczos', width: w, height: w, crop: 'disabled' },
    };
    prev = id;
  }
  p['99'] = { class_type: 'SaveImage', inputs: { images: [prev, 0], filename_prefix: prefix } };
  return p;
}

/** EmptyImage -> n-2 ImageInvert -> PreviewImage (n nodes). */
export function chainPrompt(n, { color = 0, size = 8 } = {}) {
  const p = { 1: { class_type: 'EmptyImage', inputs: { width: size, height: size, batch_size: 1, color } } };
  for (let i = 2; i < n; i++) p[String(i)] = { class_type: 'ImageInvert', inputs: { image: [String(i - 1), 0] } };
  p[String(n)] = { class_type: 'PreviewImage', inputs: { images: [String(n - 1), 0] } };
  return p;
}

/** POST /prompt; throws unless 200. Resolves the response JSON. */
export async function submit(srv, prompt, extra = {}) {
  const r = await post(srv, '/prompt', { prompt, ...extra });
  if (r.status !== 200) throw new Error(`POST /prompt answered ${r.status}: ${r.text}`);
  return r.json;
}

/** Polls GET /history/{id} until it has an entry; resolves the entry. */
export async function waitHistory(srv, promptId, timeoutMs = ms(60000)) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = await get(srv, `/history/${encodeURIComponent(promptId)}`);
    if (r.status === 200 && r.json && r.json[promptId]) return r.json[promptId];
    if (performance.now() > deadline) {
      throw new Error(`timeout after ${timeoutMs} ms waiting for history of ${promptId} (last: ${r.status} ${r.text.slice(0, 200)})`);
    }
    await sleep(50);
  }
}

/** Polls GET /prompt until queue_remaining is 0. */
export async function waitIdle(srv, timeoutMs = ms(60000)) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = await get(srv, '/prompt');
    if (r.status === 200 && r.json && r.json.exec_info && r.json.exec_info.queue_remaining === 0) return;
    if (performance.now() > deadline) throw new Error(`timeout waiting for an idle queue (last: ${r.text})`);
    await sleep(50);
  }
}

// ------------------------------------------------------------------ files

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A valid w x h 8-bit PNG filled with one colour: RGB for 3 components, RGBA for 4. */
export function makePng(w = 2, h = 2, color = [255, 0, 0]) {
  const ch = color.length;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = ch === 4 ? 6 : 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  const row = Buffer.alloc(1 + ch * w);
  for (let x = 0; x < w; x++) for (let k = 0; k < ch; k++) row[1 + ch * x + k] = color[k];
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([PNG_SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** multipart/form-data through fetch's FormData. fields: {name: string}, files:
 * [{field, filename, data: Buffer, type}]. */
export function form(fields = {}, files = []) {
  const fd = new FormData();
  for (const f of files) fd.append(f.field || 'image', new Blob([f.data], { type: f.type || 'image/png' }), f.filename);
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  return fd;
}

/** A hand-written multipart body (to control every byte). parts: [{name, filename?, type?, data}]. */
export function rawMultipart(parts, boundary = '----weftE2E' + Math.random().toString(16).slice(2)) {
  const bufs = [];
  for (const p of parts) {
    let h = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) h += `; filename="${p.filename}"`;
    h += '\r\n';
    if (p.type) h += `Content-Type: ${p.type}\r\n`;
    h += '\r\n';
    bufs.push(Buffer.from(h, 'utf8'), Buffer.isBuffer(p.data) ? p.data : Buffer.from(String(p.data), 'utf8'), Buffer.from('\r\n'));
  }
  bufs.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(bufs), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** Stops the server with SIGTERM and asserts a clean exit: code 0 within the wait, which under
 * ASan also means no leak or sanitizer report. Shows the server's stderr tail on failure. */
export async function assertCleanStop(assert, srv, waitMs = ms(15000)) {
  const res = await srv.stop(waitMs);
  const tail = srv.stderr().slice(-4000);
  assert.ok(!res.forced, `server did not exit within ${waitMs} ms of SIGTERM; stderr:\n${tail}`);
  assert.equal(res.signal, null, `server died of ${res.signal}; stderr:\n${tail}`);
  assert.equal(res.code, 0, `exit code ${res.code}; stderr:\n${tail}`);
  return res;
}

/** One request written byte for byte on its own connection (no URL normalisation, unlike
 * fetch), with Connection: close. Resolves {status, headers, body, text} of the first response
 * (status 0 when none arrived). */
export async function rawRequest(srv, method, target, { body, headers = {}, timeoutMs = ms(10000) } = {}) {
  const b = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body);
  let head = `${method} ${target} HTTP/1.1\r\nHost: ${srv.host}:${srv.port}\r\nConnection: close\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  if (b.length || method === 'POST' || method === 'PUT') head += `Content-Length: ${b.length}\r\n`;
  head += '\r\n';
  const r = await rawExchange(srv.port, [Buffer.from(head, 'latin1'), b], { timeoutMs });
  const res = parseResponses(r.data)[0];
  if (!res) return { status: 0, headers: {}, body: Buffer.alloc(0), text: '', raw: r.data };
  return { ...res, text: res.body.toString('utf8') };
}
