// Small DOM helpers shared by the panels: element builder, toasts, modal dialogs, downloads.
// Text always goes in through textContent (never innerHTML), so server strings cannot inject
// markup.

/** h('div.a.b#id', {onclick, title, ...}, child, 'text', [more]) → element. */
export function h(spec, attrs = {}, ...children) {
  const m = spec.match(/^([a-z0-9-]+)?((?:[.#][\w-]+)*)$/i);
  const el = document.createElement(m?.[1] || 'div');
  for (const part of (m?.[2] || '').match(/[.#][\w-]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A short message in the corner; kind: info, ok, error. */
export function toast(message, kind = 'info', ms = kind === 'error' ? 8000 : 3500) {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div#toasts');
    document.body.append(box);
  }
  const t = h(`div.toast.${kind}`, { role: kind === 'error' ? 'alert' : 'status' }, message);
  t.addEventListener('click', () => t.remove());
  box.append(t);
  setTimeout(() => t.remove(), ms);
  return t;
}

/**
 * A modal dialog. body: node(s); buttons: [{label, value, primary, danger}]. Resolves the
 * clicked button's value (undefined when dismissed with Escape or the backdrop).
 * opts.onOpen(dialogEl) runs once shown; a button's `check()` may veto closing.
 */
export function modal(title, body, buttons = [{ label: 'Close', value: true }], opts = {}) {
  return new Promise((resolve) => {
    const close = (v) => {
      back.remove();
      document.removeEventListener('keydown', onKey, true);
      resolve(v);
    };
    const onKey = (e) => {
      if (e.key === 'Escape') { e.stopPropagation(); close(undefined); }
      if (e.key === 'Enter' && e.target.tagName === 'INPUT' && defaultBtn) { e.preventDefault(); defaultBtn.click(); }
    };
    let defaultBtn = null;
    const btns = buttons.map((b) => {
      const el = h(`button${b.primary ? '.primary' : ''}${b.danger ? '.danger' : ''}`, {
        type: 'button',
        onclick: async () => {
          if (b.check && !(await b.check())) return;
          close(b.value);
        },
      }, b.label);
      if (b.primary) defaultBtn = el;
      return el;
    });
    const dialog = h('div.modal', { role: 'dialog', 'aria-label': title },
      h('h2', title), h('div.modal-body', body), h('div.modal-buttons', btns));
    const back = h('div.modal-back', { onmousedown: (e) => { if (e.target === back) close(undefined); } }, dialog);
    document.body.append(back);
    document.addEventListener('keydown', onKey, true);
    const first = dialog.querySelector('input, textarea, select');
    (first || btns.find((b) => b.classList.contains('primary')) || btns[0])?.focus();
    opts.onOpen?.(dialog);
  });
}

/** Asks for one line of text; resolves the text or null. */
export async function ask(title, label, value = '', okLabel = 'OK') {
  const input = h('input', { type: 'text', value, 'aria-label': label });
  const v = await modal(title, [h('label', label, input)], [
    { label: 'Cancel', value: null },
    { label: okLabel, value: 'ok', primary: true },
  ]);
  return v === 'ok' ? input.value.trim() : null;
}

export async function confirmAction(title, text, okLabel = 'OK', danger = false) {
  const v = await modal(title, [h('p', text)], [{ label: 'Cancel', value: false }, { label: okLabel, value: true, primary: !danger, danger }]);
  return v === true;
}

/** Offers text as a file download. */
export function download(filename, text, type = 'application/json') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function fmtTime(ms) {
  if (!Number.isFinite(ms)) return '';
  return new Date(ms).toLocaleString();
}

export function fmtDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '';
  return ms < 1000 ? `${Math.round(ms)} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
