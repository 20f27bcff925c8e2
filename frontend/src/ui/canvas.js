// The litegraph canvas with weft's additions drawn on each node: output images and latent
// previews below the widgets, an outline on the running node, red marks on inputs and widgets
// the server rejected. Also the canvas search box (our ranking, type filter for a link dropped
// on empty canvas) and canvas sizing.
import { LGraphCanvas, LiteGraph } from '@comfyorg/litegraph';
import { entriesFromTypes, searchNodes } from '../search.js';

const RUNNING = '#3c3';
const ERROR = '#f33';

/** Where images go: below the last widget (or the slots), to the bottom of the node. */
function imageArea(node) {
  let top = 0;
  for (const w of node.widgets || []) {
    if (w.hidden) continue;
    top = Math.max(top, (w.y || 0) + (w.computedHeight || LiteGraph.NODE_WIDGET_HEIGHT + 4));
  }
  if (!top) {
    const rows = Math.max(node.inputs?.length || 0, node.outputs?.length || 0);
    top = rows * LiteGraph.NODE_SLOT_HEIGHT + 6;
  }
  return { x: 4, y: top + 2, w: node.size[0] - 8, h: node.size[1] - top - 6 };
}

function drawImages(node, ctx) {
  const img = node.previewImage || node.imgs?.[node.imageIndex ?? 0];
  if (!img || !img.complete || !img.naturalWidth) return;
  const a = imageArea(node);
  if (a.h < 48) {
    // Make room once, then draw on the next frame.
    node.setSize([Math.max(node.size[0], 256), node.size[1] + (256 - Math.max(a.h, 0))]);
    node.setDirtyCanvas?.(true, true);
    return;
  }
  const r = Math.min(a.w / img.naturalWidth, a.h / img.naturalHeight);
  const w = img.naturalWidth * r;
  const h = img.naturalHeight * r;
  ctx.drawImage(img, a.x + (a.w - w) / 2, a.y + (a.h - h) / 2, w, h);
  if (node.imgs?.length > 1 && !node.previewImage) {
    ctx.fillStyle = '#ddd';
    ctx.font = '12px sans-serif';
    ctx.textAlign = 'right';
    ctx.fillText(`${(node.imageIndex ?? 0) + 1} / ${node.imgs.length}`, node.size[0] - 8, node.size[1] - 8);
    ctx.textAlign = 'left';
  }
}

function drawErrors(node, ctx) {
  const errs = node.weftErrors;
  if (!errs?.length) return;
  ctx.save();
  ctx.strokeStyle = ERROR;
  ctx.lineWidth = 2;
  for (const e of errs) {
    const name = e.extra_info?.input_name;
    if (!name) continue;
    const w = node.widgets?.find((x) => x.name === name);
    if (w && !w.hidden) {
      ctx.beginPath();
      ctx.roundRect(12, w.y - 1, node.size[0] - 24, LiteGraph.NODE_WIDGET_HEIGHT + 2, 6);
      ctx.stroke();
      continue;
    }
    const i = node.inputs?.findIndex((s) => s.name === name);
    if (i >= 0) {
      const p = node.getInputPos(i);
      ctx.beginPath();
      ctx.arc(p[0] - node.pos[0], p[1] - node.pos[1], 7, 0, Math.PI * 2);
      ctx.stroke();
    }
  }
  ctx.restore();
}

function drawRunning(node, ctx) {
  const t = LiteGraph.NODE_TITLE_HEIGHT;
  ctx.save();
  ctx.strokeStyle = RUNNING;
  ctx.lineWidth = 3;
  ctx.beginPath();
  const collapsed = node.flags?.collapsed;
  const w = collapsed ? (node._collapsed_width || LiteGraph.NODE_COLLAPSED_WIDTH) : node.size[0];
  const hgt = collapsed ? t : node.size[1] + t;
  ctx.roundRect(-5, -t - 5, w + 10, hgt + 10, 10);
  ctx.stroke();
  ctx.restore();
}

export class WeftCanvas extends LGraphCanvas {
  constructor(el, graph, hooks = {}) {
    super(el, graph);
    this.hooks = hooks;
    this.runningNodeId = null;
    this.searchOptions = null;
    this.onSearchBox = (helper, str) => {
      const o = this.searchOptions || {};
      const filter = o.type_filter_in && o.type_filter_in !== '*' ? { input: o.type_filter_in }
        : o.type_filter_out && o.type_filter_out !== '*' ? { output: o.type_filter_out } : {};
      return searchNodes(entriesFromTypes(LiteGraph.registered_node_types), str, { ...filter, limit: 60 }).map((e) => e.type);
    };
  }

  showSearchBox(event, options) {
    this.searchOptions = options || null;
    if (this.read_only) return null;
    return super.showSearchBox(event, options);
  }

  /** Dropping a link on empty canvas opens the search box for that socket type. */
  showConnectionMenu(o) {
    if (o.nodeFrom) return this.showSearchBox(o.e, { node_from: o.nodeFrom, slot_from: o.slotFrom, type_filter_in: o.slotFrom?.type });
    return this.showSearchBox(o.e, { node_to: o.nodeTo, slot_from: o.slotTo, type_filter_out: o.slotTo?.type });
  }

  drawNode(node, ctx) {
    super.drawNode(node, ctx);
    if (!node.flags?.collapsed) {
      drawImages(node, ctx);
      drawErrors(node, ctx);
    }
    if (this.runningNodeId != null && String(node.id) === String(this.runningNodeId)) drawRunning(node, ctx);
  }

  /** Centre of the visible area in graph coordinates. */
  visibleCentre() {
    const [x, y, w, h] = this.visible_area;
    return [x + w / 2, y + h / 2];
  }

  /** Graph → page (CSS pixel) coordinates. */
  toPage(pos) {
    const r = this.canvas.getBoundingClientRect();
    const p = this.ds.convertOffsetToCanvas(pos);
    return [r.left + p[0], r.top + p[1]];
  }
}

/** Keeps the canvas the size of its container, at the device pixel ratio. */
export function autoResize(lgc, container) {
  const fit = () => {
    const r = container.getBoundingClientRect();
    const dpr = Math.max(1, window.devicePixelRatio || 1);
    const el = lgc.canvas;
    el.style.width = `${r.width}px`;
    el.style.height = `${r.height}px`;
    el.width = Math.round(r.width * dpr);
    el.height = Math.round(r.height * dpr);
    el.getContext('2d').setTransform(dpr, 0, 0, dpr, 0, 0);
    lgc.setDirty(true, true);
  };
  new ResizeObserver(fit).observe(container);
  fit();
}

export { imageArea };
