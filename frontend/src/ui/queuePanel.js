// The queue and history panel: running and pending prompts (cancel them), finished prompts
// with status, start time, duration and output thumbnails (re-open their workflow, delete
// them). The server shows each user only their own prompts. Refreshed on WebSocket events.
import { h, clear, confirmAction, fmtDuration, fmtTime, toast } from './dom.js';

/** {start, end, status} of a history entry from its status messages. */
export function timings(entry) {
  const msgs = entry.status?.messages || [];
  let start = null;
  let end = null;
  let interrupted = false;
  for (const [type, d] of msgs) {
    if (type === 'execution_start') start = d?.timestamp ?? start;
    if (type === 'execution_success' || type === 'execution_error' || type === 'execution_interrupted') end = d?.timestamp ?? end;
    if (type === 'execution_interrupted') interrupted = true;
  }
  const status = interrupted ? 'interrupted' : entry.status?.status_str || (entry.status?.completed ? 'success' : 'unknown');
  return { start, end, status };
}

export class QueuePanel {
  constructor(editor) {
    this.editor = editor;
    this.running = h('div#queue-running');
    this.pending = h('div#queue-pending');
    this.history = h('div#history-list');
    const e = editor;
    this.el = h('section#queue-panel.panel',
      h('div.panel-head', h('h3', 'Queue'),
        e.can('queue:cancel') ? h('button#btn-clear-queue', { onclick: () => this.clearQueue() }, 'Clear pending') : null),
      this.running, this.pending,
      h('div.panel-head', h('h3', 'History'),
        e.can('history:write') ? h('button#btn-clear-history', { onclick: () => this.clearHistory() }, 'Clear') : null),
      this.history);
    this.timer = null;
    const soon = () => this.refreshSoon();
    for (const t of ['changed', 'finished', 'queue']) e.execution.addEventListener(t, soon);
    e.addEventListener('queued', soon);
  }

  refreshSoon(ms = 200) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), ms);
  }

  async refresh() {
    const api = this.editor.api;
    try {
      const [q, hist] = await Promise.all([
        this.editor.can('queue:read') ? api.queue() : { queue_running: [], queue_pending: [] },
        this.editor.can('history:read') ? api.history(50) : {},
      ]);
      this.renderQueue(q);
      this.renderHistory(hist);
    } catch (err) {
      if (err.status !== 401) toast(`Cannot read the queue: ${err.message}`, 'error');
    }
  }

  queueItem(item, running) {
    const [number, id, prompt, extra] = item;
    const nodes = Object.keys(prompt || {}).length;
    return h(`div.q-item${running ? '.running' : ''}`, { dataset: { promptId: id } },
      h('span.q-num', `#${number}`),
      h('span.q-status', running ? 'running' : 'pending'),
      h('span.q-info', `${nodes} nodes`),
      h('span.spacer'),
      this.openButton(prompt, extra, id),
      this.editor.can('queue:cancel') ? h('button.q-cancel', {
        onclick: () => (running ? this.editor.api.interrupt(id) : this.editor.api.deleteQueued([id])).then(() => this.refreshSoon(50), (e) => toast(e.message, 'error')),
      }, 'Cancel') : null);
  }

  renderQueue(q) {
    clear(this.running, (q.queue_running || []).map((i) => this.queueItem(i, true)));
    // The server lists pending prompts in the order they will start (fair across users).
    const pend = q.queue_pending || [];
    clear(this.pending, pend.length ? pend.map((i) => this.queueItem(i, false)) : (q.queue_running?.length ? null : h('div.muted', 'Nothing queued')));
  }

  openButton(prompt, extra, id) {
    const wf = extra?.extra_pnginfo?.workflow;
    return h('button.q-open', {
      title: 'Open the workflow of this prompt',
      onclick: () => {
        try {
          this.editor.load(wf ? { kind: 'ui', graph: wf } : { kind: 'api', prompt }, { name: `Prompt ${String(id).slice(0, 8)}`, source: 'history' });
        } catch (e) {
          toast(`Cannot open: ${e.message}`, 'error');
        }
      },
    }, 'Open');
  }

  renderHistory(hist) {
    const api = this.editor.api;
    const items = Object.entries(hist || {}).map(([id, entry]) => ({ id, entry, t: timings(entry) }))
      .sort((a, b) => (b.t.start ?? 0) - (a.t.start ?? 0) || (b.entry.prompt?.[0] ?? 0) - (a.entry.prompt?.[0] ?? 0));
    if (!items.length) {
      clear(this.history, h('div.muted', 'No finished prompts'));
      return;
    }
    clear(this.history, items.map(({ id, entry, t }) => {
      const images = Object.values(entry.outputs || {}).flatMap((o) => o.images || []);
      const dur = t.start != null && t.end != null ? fmtDuration(t.end - t.start) : '';
      return h(`div.h-item.${t.status}`, { dataset: { promptId: id } },
        h('div.h-line',
          h('span.q-num', `#${entry.prompt?.[0] ?? ''}`),
          h('span.h-status', t.status),
          h('span.h-time', t.start ? fmtTime(t.start) : ''),
          h('span.h-dur', dur),
          h('span.spacer'),
          this.openButton(entry.prompt?.[2], entry.prompt?.[3], id),
          this.editor.can('history:write') ? h('button.h-delete', {
            title: 'Remove from history',
            onclick: () => api.deleteHistory([id]).then(() => this.refreshSoon(50), (e) => toast(e.message, 'error')),
          }, 'Delete') : null),
        images.length ? h('div.h-thumbs', images.slice(0, 8).map((im) => h('img.thumb', {
          src: api.viewUrl(im), alt: im.filename, loading: 'lazy',
          onclick: () => this.editor.emit('show-image', { image: im }),
        }))) : null);
    }));
  }

  async clearQueue() {
    if (await confirmAction('Clear queue', 'Remove every pending prompt of yours from the queue?', 'Clear', true)) {
      await this.editor.api.clearQueue().catch((e) => toast(e.message, 'error'));
      this.refreshSoon(50);
    }
  }

  async clearHistory() {
    if (await confirmAction('Clear history', 'Delete your whole prompt history?', 'Delete', true)) {
      await this.editor.api.clearHistory().catch((e) => toast(e.message, 'error'));
      this.refreshSoon(50);
    }
  }
}
