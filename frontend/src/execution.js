// Execution feedback from /ws: which prompt and node run, per-node progress bars, overall
// progress (done nodes + the running node's fraction, over the prompt's node count), latent
// previews, output images on their nodes, and the end of a prompt (success, error with the
// server's message on the failing node, interrupted). Emits events the panels listen to.

export class Execution extends EventTarget {
  constructor(editor) {
    super();
    this.editor = editor;
    this.prompts = new Map(); // prompt_id -> {total, nodes: Set done, doc}
    this.runningPrompt = null;
    this.runningNode = null;
    this.nodeFraction = 0;
    this.queueRemaining = 0;
    this.previewUrl = null;
    this.finished = new Set(); // recently finished prompt ids
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Called when this tab queued a prompt: the count makes the overall bar. The answer to
   * POST /prompt may come after the prompt started (or even finished). */
  track(promptId, nodeCount) {
    if (this.finished.has(promptId)) return;
    const p = this.prompts.get(promptId);
    if (p) Object.assign(p, { total: Math.max(1, nodeCount), docId: this.editor.docId });
    else this.prompts.set(promptId, { total: Math.max(1, nodeCount), done: new Set(), docId: this.editor.docId });
    this.progressChanged();
  }

  bind(ws) {
    const on = (t, f) => ws.addEventListener(t, (e) => f.call(this, e.detail || {}));
    on('status', (d) => {
      this.queueRemaining = d.status?.exec_info?.queue_remaining ?? this.queueRemaining;
      this.emit('queue', { remaining: this.queueRemaining });
    });
    on('execution_start', (d) => this.start(d.prompt_id));
    on('execution_cached', (d) => {
      const p = this.prompts.get(d.prompt_id);
      for (const id of d.nodes || []) p?.done.add(String(id));
      this.progressChanged();
    });
    on('executing', (d) => this.executing(d.prompt_id, d.display_node ?? d.node));
    on('progress', (d) => this.progress(d));
    on('executed', (d) => this.executed(d));
    on('execution_success', (d) => this.finish(d.prompt_id, 'success'));
    on('execution_error', (d) => this.finish(d.prompt_id, 'error', d));
    on('execution_interrupted', (d) => this.finish(d.prompt_id, 'interrupted', d));
    on('preview', (d) => this.preview(d));
    on('open', () => this.emit('changed'));
  }

  /** The node of the open graph a message is about, when the prompt came from this graph. */
  nodeFor(promptId, nodeId) {
    const p = this.prompts.get(promptId);
    if (nodeId == null || (p && p.docId !== this.editor.docId)) return null;
    const id = String(nodeId).split(':').pop();
    return this.editor.graph.getNodeById(Number(id)) ?? this.editor.graph.getNodeById(id);
  }

  start(promptId) {
    this.runningPrompt = promptId;
    this.runningNode = null;
    this.nodeFraction = 0;
    if (!this.prompts.has(promptId)) this.prompts.set(promptId, { total: 1, done: new Set(), docId: this.editor.docId });
    this.editor.clearExecutionErrors();
    this.emit('changed');
    this.progressChanged();
  }

  clearNodeProgress() {
    const n = this.nodeFor(this.runningPrompt, this.runningNode);
    if (n) {
      n.progress = undefined;
      n.previewImage = null;
    }
  }

  executing(promptId, nodeId) {
    const p = this.prompts.get(promptId);
    this.clearNodeProgress();
    if (this.runningNode != null) p?.done.add(String(this.runningNode));
    if (nodeId == null) {
      // Older servers say "done" this way.
      this.runningNode = null;
      this.editor.setRunningNode(null);
      this.progressChanged();
      return;
    }
    this.runningPrompt = promptId;
    this.runningNode = String(nodeId);
    this.nodeFraction = 0;
    const n = this.nodeFor(promptId, nodeId);
    this.editor.setRunningNode(n ? n.id : null);
    this.progressChanged();
  }

  progress(d) {
    this.nodeFraction = d.max ? Math.min(1, d.value / d.max) : 0;
    const n = this.nodeFor(d.prompt_id, d.node ?? this.runningNode);
    if (n) n.progress = this.nodeFraction;
    this.progressChanged();
  }

  executed(d) {
    const images = d.output?.images || [];
    const n = this.nodeFor(d.prompt_id, d.display_node ?? d.node);
    if (n && images.length) this.editor.showNodeImages(n, images);
    if (images.length) this.emit('images', { promptId: d.prompt_id, nodeId: d.node, images });
  }

  preview(f) {
    const p = this.runningPrompt;
    const nodeId = f.meta?.node_id ?? f.meta?.display_node_id ?? this.runningNode;
    const n = this.nodeFor(f.meta?.prompt_id ?? p, nodeId);
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = URL.createObjectURL(f.image);
    if (n) {
      const img = new Image();
      img.onload = () => this.editor.canvas?.setDirty(true, false);
      img.src = this.previewUrl;
      n.previewImage = img;
    }
    this.emit('preview', { url: this.previewUrl, nodeId });
  }

  finish(promptId, status, d = {}) {
    this.clearNodeProgress();
    if (status === 'error') {
      const n = this.nodeFor(promptId, d.node_id);
      this.editor.showExecutionError(n, d);
    }
    if (this.runningPrompt === promptId) {
      this.runningPrompt = null;
      this.runningNode = null;
      this.nodeFraction = 0;
      this.editor.setRunningNode(null);
    }
    this.prompts.delete(promptId);
    this.finished.add(promptId);
    if (this.finished.size > 200) this.finished.delete(this.finished.values().next().value);
    this.emit('finished', { promptId, status, data: d });
    this.emit('changed');
    this.progressChanged();
  }

  /** 0..1 for the running prompt, or null when nothing runs. */
  get overall() {
    const p = this.prompts.get(this.runningPrompt);
    if (!this.runningPrompt || !p) return null;
    return Math.min(1, (p.done.size + (this.runningNode ? this.nodeFraction : 0)) / p.total);
  }

  progressChanged() {
    this.editor.canvas?.setDirty(true, false);
    this.emit('progress', { overall: this.overall, node: this.runningNode, nodeFraction: this.nodeFraction });
  }
}
