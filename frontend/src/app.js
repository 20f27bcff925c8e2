// The editor: owns the graph, canvas, undo history and the open document (name, library path,
// owner, read-only), and wires the panels together. Queueing, loading, saving and the
// execution display go through here.
import { LGraph, LiteGraph } from '@comfyorg/litegraph';
import { registerNodeDefs } from './nodeDefs.js';
import { registerFrontendNodes } from './frontendNodes.js';
import { graphToPrompt } from './graphToPrompt.js';
import { applyControls } from './valueControl.js';
import { loadGraph } from './graphLoad.js';
import { apiToGraph } from './apiToGraph.js';
import { ChangeTracker } from './changeTracker.js';
import { classifyWorkflow, workflowFromBytes } from './workflowFormat.js';
import { buildDefaultGraph } from './defaultGraph.js';
import { Execution } from './execution.js';
import { WeftCanvas, autoResize } from './ui/canvas.js';
import { DomWidgets } from './ui/domWidgets.js';
import { Uploads, uploadCombo } from './ui/upload.js';
import { ErrorsPanel } from './ui/errorsPanel.js';
import { toast } from './ui/dom.js';

const AUTOSAVE = 'weft.autosave.';

export class Editor extends EventTarget {
  constructor({ api, ws, session }) {
    super();
    this.api = api;
    this.ws = ws;
    this.session = session;
    this.graph = new LGraph();
    this.canvas = null;
    this.docId = 0;
    this.doc = { name: 'Unsaved workflow', path: null, owner: session.user, readOnly: false, source: 'new' };
    this.nodeOutputs = {};
    this.execution = new Execution(this);
    this.uploads = new Uploads(this);
    this.tracker = new ChangeTracker(() => this.graph.serialize(), (s) => this.restoreState(s));
    this.checkQueued = false;
  }

  can(scope) {
    return this.session.scopes.has(scope);
  }

  get readOnly() {
    return !!this.doc.readOnly;
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Registers the server's node classes (again, for a refresh of model lists). */
  registerNodes(objectInfo) {
    const env = {
      multiline: this.domWidgets?.hook(),
      upload: (node, combo) => this.uploads.choose(node, combo),
      onCreated: (node) => { if (uploadCombo(node)) this.uploads.attach(node); },
      onConfigured: (node) => { if (uploadCombo(node)) this.uploads.showPreview(node); },
    };
    this.objectInfo = objectInfo;
    registerNodeDefs(objectInfo, env);
    registerFrontendNodes({ multiline: env.multiline });
  }

  /** Builds the canvas inside `wrap` (which also gets the text box layer). */
  mount(wrap, canvasEl, layer) {
    this.domWidgets = new DomWidgets(layer, { onEdit: () => this.changedSoon(), readOnly: () => this.readOnly });
    this.canvas = new WeftCanvas(canvasEl, this.graph);
    const c = this.canvas;
    c.show_info = false;
    c.render_canvas_border = false;
    c.low_quality_zoom_threshold = 0.35;
    c.onRender = () => this.domWidgets.startFrame();
    c.onDrawForeground = () => this.domWidgets.endFrame(this.graph);
    autoResize(c, wrap);
    LiteGraph.release_link_on_empty_shows_menu = true;
    LiteGraph.ctrl_shift_v_paste_connect_unselected_outputs = true;
    // Every user action may change the graph: compare after it (undo steps, modified mark).
    for (const t of ['pointerup', 'keyup']) document.addEventListener(t, () => this.changedSoon(), true);
    this.errors = new ErrorsPanel(this);
  }

  // ---------------------------------------------------------------- documents

  /** Replaces the graph. data: editor graph or API prompt ({kind, ...} from classifyWorkflow or
   * plain editor JSON); doc: the document's metadata. */
  load(data, doc = {}) {
    const c = data && data.kind ? data : classifyWorkflow(data);
    if (!c) throw new Error('not a workflow');
    this.docId++;
    this.nodeOutputs = {};
    this.canvas?.deselectAll();
    this.domWidgets?.clear();
    this.clearErrors();
    let missing;
    if (c.kind === 'ui') missing = loadGraph(this.graph, c.graph).missing;
    else missing = apiToGraph(this.graph, c.prompt).missing;
    this.doc = { name: 'Unsaved workflow', path: null, owner: this.session.user, readOnly: false, source: 'file', ...doc };
    this.applyReadOnly();
    const ds = c.kind === 'ui' ? c.graph.extra?.ds : null;
    if (this.canvas) {
      if (ds?.offset && ds.scale) {
        this.canvas.ds.offset = [ds.offset[0], ds.offset[1]];
        this.canvas.ds.scale = ds.scale;
      } else {
        this.fitView();
      }
      this.canvas.setDirty(true, true);
    }
    this.tracker.reset(true);
    if (doc.source === 'autosave' && doc.modified) this.tracker.saved = null;
    if (missing.length) toast(`This workflow uses node types this server does not have: ${missing.join(', ')}`, 'error');
    this.emit('doc');
    return { missing };
  }

  /** A new document: empty, or the default text-to-image graph. */
  newWorkflow(empty = false) {
    const g = new LGraph();
    if (!empty) buildDefaultGraph(g);
    this.load(g.serialize(), { source: 'new' });
    this.autosave();
  }

  async loadFile(file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const c = await workflowFromBytes(bytes);
    const name = file.name.replace(/\.(json|png)$/i, '');
    this.load(c, { name, source: 'file' });
    toast(`Opened ${file.name}`, 'ok');
  }

  restoreState(state) {
    this.canvas?.deselectAll();
    this.domWidgets?.clear();
    loadGraph(this.graph, state);
    // Output images belong to node ids, not to graph states: keep showing them.
    for (const [id, images] of Object.entries(this.nodeOutputs)) {
      const n = this.graph.getNodeById(Number(id));
      if (n) this.showNodeImages(n, images);
    }
    this.canvas?.setDirty(true, true);
  }

  fitView() {
    const nodes = this.graph._nodes;
    const c = this.canvas;
    if (!c || !nodes.length) {
      if (c) { c.ds.offset = [0, 0]; c.ds.scale = 1; }
      return;
    }
    let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
    for (const n of nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const r = c.canvas.getBoundingClientRect();
    const scale = Math.max(0.5, Math.min(1, (r.width - 80) / (x1 - x0), (r.height - 80) / (y1 - y0)));
    c.ds.scale = scale;
    c.ds.offset = [(r.width / scale - (x1 - x0)) / 2 - x0, (r.height / scale - (y1 - y0)) / 2 - y0];
    c.setDirty(true, true);
  }

  setReadOnly(v) {
    this.doc.readOnly = v;
    this.applyReadOnly();
    this.emit('doc');
  }

  applyReadOnly() {
    if (!this.canvas) return;
    this.canvas.read_only = this.readOnly;
    this.canvas.allow_dragnodes = !this.readOnly;
    this.canvas.allow_interaction = !this.readOnly;
    this.canvas.setDirty(true, true);
  }

  /** Something may have changed: check after this event settles (one check per frame). */
  changedSoon() {
    if (this.checkQueued) return;
    this.checkQueued = true;
    requestAnimationFrame(() => {
      this.checkQueued = false;
      this.changed();
    });
  }

  changed() {
    // litegraph drops out of read-only while Space is held; keep shared documents read-only.
    if (this.canvas && this.readOnly && !this.canvas.read_only) this.applyReadOnly();
    if (this.tracker.check()) {
      this.autosave();
      this.emit('doc');
    }
  }

  autosave() {
    try {
      localStorage.setItem(AUTOSAVE + this.session.user, JSON.stringify({
        graph: this.graph.serialize(),
        doc: { ...this.doc, modified: this.tracker.modified },
      }));
    } catch { /* storage full or disabled: nothing to keep */ }
  }

  /** The last graph of this user in this browser, or the default one. */
  restoreAutosave() {
    try {
      const s = JSON.parse(localStorage.getItem(AUTOSAVE + this.session.user) || 'null');
      if (s?.graph) {
        this.load(s.graph, { ...s.doc, source: 'autosave' });
        return true;
      }
    } catch { /* a broken entry: start fresh */ }
    this.newWorkflow(false);
    return false;
  }

  undo() {
    if (this.readOnly) return;
    if (this.tracker.undo()) this.afterHistoryStep();
  }

  redo() {
    if (this.readOnly) return;
    if (this.tracker.redo()) this.afterHistoryStep();
  }

  afterHistoryStep() {
    this.autosave();
    this.emit('doc');
  }

  // ---------------------------------------------------------------- queueing

  /** Queues the graph `count` times (controls step after each). front: run next. */
  async queue({ front = false, count = 1, targets = null } = {}) {
    if (!this.can('prompt:submit')) {
      toast('Your role cannot run prompts.', 'error');
      return null;
    }
    let last = null;
    for (let i = 0; i < count; i++) {
      const { output, missing } = graphToPrompt(this.graph, { targets });
      if (missing.length) {
        toast(`Cannot queue: unknown node types ${[...new Set(missing.map((m) => m.type))].join(', ')}`, 'error');
        return null;
      }
      if (!Object.keys(output).length) {
        toast('Nothing to run: the graph has no nodes the server can execute.', 'error');
        return null;
      }
      const body = {
        client_id: this.ws.clientId,
        prompt: output,
        extra_data: { extra_pnginfo: { workflow: this.graph.serialize() } },
      };
      if (front) body.front = true;
      if (targets?.length) body.partial_execution_targets = targets.map(String);
      // Cleared before sending: a fast prompt's execution_error can arrive before the answer.
      this.clearErrors();
      try {
        const r = await this.api.queuePrompt(body);
        this.execution.track(r.prompt_id, Object.keys(output).length);
        last = r;
        this.emit('queued', r);
      } catch (e) {
        if (e.body?.node_errors && Object.keys(e.body.node_errors).length) this.errors.showValidation(e.body);
        else if (e.body?.error) this.errors.showValidation(e.body);
        else toast(`Queue failed: ${e.message}`, 'error');
        return null;
      }
      applyControls(this.graph, { onChange: (node) => node.onWidgetValueSet?.() });
      this.canvas?.setDirty(true, true);
      this.changed();
    }
    return last;
  }

  async interrupt() {
    try {
      await this.api.interrupt(this.execution.runningPrompt);
    } catch (e) {
      toast(`Interrupt failed: ${e.message}`, 'error');
    }
  }

  /** Output node ids among the selected nodes (for "queue selected outputs"). */
  selectedOutputs() {
    return Object.values(this.canvas?.selected_nodes || {}).filter((n) => n.isOutputNode).map((n) => n.id);
  }

  // ---------------------------------------------------------------- execution display

  setRunningNode(id) {
    if (this.canvas) {
      this.canvas.runningNodeId = id;
      this.canvas.setDirty(true, false);
    }
  }

  showNodeImages(node, images) {
    this.nodeOutputs[node.id] = images;
    node.imgs = images.map((im) => {
      const img = new Image();
      img.onload = () => this.canvas?.setDirty(true, false);
      img.src = this.api.viewUrl(im);
      return img;
    });
    node.imageIndex = 0;
    node.previewImage = null;
    node.weftImages = images;
  }

  clearErrors() {
    this.errors?.clear();
  }

  clearExecutionErrors() {
    this.errors?.clearExecution();
  }

  showExecutionError(node, data) {
    this.errors?.showExecution(node, data);
  }

  // ---------------------------------------------------------------- misc

  addNode(type, pos) {
    if (this.readOnly) return null;
    const n = LiteGraph.createNode(type);
    if (!n) return null;
    n.pos = pos || this.canvas.visibleCentre();
    this.graph.add(n);
    this.canvas.selectNode(n);
    this.canvas.setDirty(true, true);
    this.changed();
    return n;
  }

  /** Exported editor JSON of the open graph. */
  workflowJson() {
    return JSON.stringify(this.graph.serialize(), null, 2);
  }

  apiJson() {
    return JSON.stringify(graphToPrompt(this.graph).output, null, 2);
  }
}

