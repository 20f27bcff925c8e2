// The REST client: every call of the weft/ComfyUI API the editor makes. Browser sessions use
// the HttpOnly cookie the server sets at login; writes carry the X-CSRF-Token the login answer
// gave (kept in localStorage so a reload keeps it: GET /auth/me does not repeat it). Throttled
// requests (429) are retried after Retry-After; a 401 tells the app to show the login page.

export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }

  get type() {
    const e = this.body?.error;
    return typeof e === 'string' ? e : e?.type;
  }
}

const CSRF_KEY = 'weft.csrf';
const enc = encodeURIComponent;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function messageOf(status, body, text) {
  const e = body?.error;
  if (e && typeof e === 'object') return e.message || e.type || `HTTP ${status}`;
  if (typeof e === 'string') return body.message || e;
  return text?.slice(0, 200) || `HTTP ${status}`;
}

export class Api extends EventTarget {
  constructor(base = '') {
    super();
    this.base = base;
    this.csrf = globalThis.localStorage?.getItem(CSRF_KEY) || null;
  }

  setCsrf(token) {
    this.csrf = token || null;
    if (token) localStorage.setItem(CSRF_KEY, token);
    else localStorage.removeItem(CSRF_KEY);
  }

  /** fetch with JSON in and out. opts: body (object → JSON, FormData, string), raw (return the
   * Response), quiet401 (do not announce a 401). */
  async request(method, path, opts = {}) {
    const headers = { ...(opts.headers || {}) };
    let body = opts.body;
    if (body !== undefined && !(body instanceof FormData) && typeof body !== 'string' && !(body instanceof Blob)) {
      body = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    if (method !== 'GET' && method !== 'HEAD' && this.csrf) headers['X-CSRF-Token'] = this.csrf;
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(this.base + path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
      if (res.status === 429 && attempt < 4) {
        const wait = Math.min(5, Math.max(0.2, Number(res.headers.get('Retry-After')) || 1));
        await sleep(wait * 1000);
        continue;
      }
      if (opts.raw && res.ok) return res;
      const text = res.status === 204 ? '' : await res.text();
      let json;
      try { json = text ? JSON.parse(text) : null; } catch { json = undefined; }
      if (!res.ok) {
        const err = new ApiError(res.status, json, messageOf(res.status, json, text));
        if (res.status === 401 && !opts.quiet401) this.dispatchEvent(new CustomEvent('unauthorized', { detail: err }));
        throw err;
      }
      return json === undefined ? text : json;
    }
  }

  get(path, opts) { return this.request('GET', path, opts); }
  post(path, body, opts = {}) { return this.request('POST', path, { ...opts, body }); }
  del(path, opts) { return this.request('DELETE', path, opts); }

  // ---------------------------------------------------------------- session
  async login(username, password) {
    const r = await this.request('POST', '/auth/login', { body: { username, password }, quiet401: true });
    this.setCsrf(r.csrf_token);
    return r;
  }
  async logout() {
    try { await this.request('POST', '/auth/logout', { quiet401: true }); } finally { this.setCsrf(null); }
  }
  me() { return this.request('GET', '/auth/me', { quiet401: true }); }

  // ---------------------------------------------------------------- nodes, prompts, queue
  objectInfo() { return this.get('/object_info'); }
  queuePrompt(body) { return this.post('/prompt', body); }
  queue() { return this.get('/queue'); }
  deleteQueued(ids) { return this.post('/queue', { delete: ids }); }
  clearQueue() { return this.post('/queue', { clear: true }); }
  interrupt(promptId) { return this.post('/interrupt', promptId ? { prompt_id: promptId } : {}); }
  history(max = 50) { return this.get(`/history?max_items=${max}`); }
  deleteHistory(ids) { return this.post('/history', { delete: ids }); }
  clearHistory() { return this.post('/history', { clear: true }); }
  viewUrl(img, extra = '') {
    const q = `filename=${enc(img.filename)}&type=${enc(img.type || 'output')}&subfolder=${enc(img.subfolder || '')}`;
    return `${this.base}/view?${q}${extra}`;
  }
  uploadImage(file, { overwrite = false, type = 'input', subfolder = '' } = {}) {
    const fd = new FormData();
    fd.append('image', file, file.name || 'image.png');
    fd.append('type', type);
    if (subfolder) fd.append('subfolder', subfolder);
    if (overwrite) fd.append('overwrite', 'true');
    return this.post('/upload/image', fd);
  }

  // ---------------------------------------------------------------- workflow library
  async listWorkflows() {
    try {
      return await this.get('/userdata?dir=workflows&recurse=true&split=false&full_info=true');
    } catch (e) {
      if (e.status === 404) return []; // no workflows folder yet
      throw e;
    }
  }
  getWorkflow(path) { return this.get(`/userdata/${enc(path)}`); }
  saveWorkflow(path, data, overwrite = true) {
    return this.post(`/userdata/${enc(path)}?overwrite=${overwrite}&full_info=true`, JSON.stringify(data), {
      headers: { 'Content-Type': 'application/json' },
    });
  }
  moveWorkflow(from, to) { return this.post(`/userdata/${enc(from)}/move/${enc(to)}?overwrite=false`); }
  deleteWorkflow(path) { return this.del(`/userdata/${enc(path)}`); }

  // ---------------------------------------------------------------- sharing
  share(path, { users = [], roles = [], isPublic = false }) {
    return this.post('/weft/workflows/share', { path, users, roles, public: isPublic });
  }
  unshare(path) { return this.del(`/weft/workflows/share?path=${enc(path)}`); }
  sharedWithMe() { return this.get('/weft/workflows/shared'); }
  getShared(owner, path) { return this.get(`/weft/workflows/shared/${enc(owner)}/${enc(path)}`); }
  createShareLink(path, expiresInS) { return this.post('/weft/share_links', { kind: 'workflow', path, expires_in_s: expiresInS }); }
  shareLinks() { return this.get('/weft/share_links'); }
  revokeShareLink(id) { return this.del(`/weft/share_links/${enc(id)}`); }
  openShareLink(token) { return this.get(`/share/${enc(token)}`, { quiet401: true }); }

  // ---------------------------------------------------------------- keys and users
  keys(all = false) { return this.get(`/auth/keys${all ? '?all=true' : ''}`); }
  createKey(body) { return this.post('/auth/keys', body); }
  revokeKey(id) { return this.del(`/auth/keys/${enc(id)}`); }
  users() { return this.get('/auth/users'); }
}
