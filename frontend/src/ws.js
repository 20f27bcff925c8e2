// The WebSocket client of /ws: keeps one client id for this tab (prompts queued with it get
// their previews here), negotiates preview metadata, turns JSON messages into events named by
// their type and binary preview frames into "preview" events, and reconnects with back-off.
// The browser sends the session cookie with the upgrade, so no key ever sits in page code.

const ID_KEY = 'weft.clientId';

function newId() {
  return globalThis.crypto?.randomUUID?.().replace(/-/g, '') || Math.random().toString(16).slice(2) + Date.now().toString(16);
}

/** {type, image: Blob, meta} of a binary frame, or null for kinds the editor does not show. */
export function parseBinaryFrame(buf) {
  const view = new DataView(buf);
  if (buf.byteLength < 8) return null;
  const event = view.getUint32(0);
  if (event === 1) {
    const fmt = view.getUint32(4);
    return { type: 'preview', image: new Blob([buf.slice(8)], { type: fmt === 2 ? 'image/png' : 'image/jpeg' }), meta: null };
  }
  if (event === 4) {
    const len = view.getUint32(4);
    if (8 + len > buf.byteLength) return null;
    let meta = null;
    try { meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, len))); } catch { return null; }
    return { type: 'preview', image: new Blob([buf.slice(8 + len)], { type: meta?.image_type || 'image/jpeg' }), meta };
  }
  return null;
}

export class WsClient extends EventTarget {
  constructor() {
    super();
    this.clientId = sessionStorage.getItem(ID_KEY) || newId();
    sessionStorage.setItem(ID_KEY, this.clientId);
    this.socket = null;
    this.closed = true;
    this.retryMs = 500;
  }

  connect() {
    this.closed = false;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const s = new WebSocket(`${proto}//${location.host}/ws?clientId=${encodeURIComponent(this.clientId)}`);
    s.binaryType = 'arraybuffer';
    this.socket = s;
    s.addEventListener('open', () => {
      this.retryMs = 500;
      s.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
      this.dispatchEvent(new CustomEvent('open'));
    });
    s.addEventListener('message', (e) => {
      if (typeof e.data !== 'string') {
        const f = parseBinaryFrame(e.data);
        if (f) this.dispatchEvent(new CustomEvent(f.type, { detail: f }));
        return;
      }
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (!msg || typeof msg.type !== 'string') return;
      if (msg.type === 'status' && msg.data?.sid && msg.data.sid !== this.clientId) {
        this.clientId = msg.data.sid;
        sessionStorage.setItem(ID_KEY, this.clientId);
      }
      this.dispatchEvent(new CustomEvent(msg.type, { detail: msg.data || {} }));
    });
    s.addEventListener('close', (e) => {
      if (this.socket !== s) return;
      this.socket = null;
      this.dispatchEvent(new CustomEvent('close', { detail: { code: e.code } }));
      if (this.closed) return;
      // 1008: the server revoked this session or key; the app decides (log in again).
      if (e.code === 1008) {
        this.dispatchEvent(new CustomEvent('revoked'));
        return;
      }
      setTimeout(() => { if (!this.closed) this.connect(); }, this.retryMs);
      this.retryMs = Math.min(10000, this.retryMs * 2);
    });
  }

  close() {
    this.closed = true;
    const s = this.socket;
    this.socket = null;
    s?.close();
  }

  get connected() {
    return this.socket?.readyState === 1;
  }
}
