// Multiline text widgets as real <textarea>s laid over the canvas. litegraph calls the widget's
// draw() with the node's transform; from it we place the textarea at the widget's spot (scaled
// with the zoom). Textareas whose widget was not drawn in a frame (off screen, collapsed,
// deleted, zoomed far out) are hidden at the end of the frame.
import { h } from './dom.js';

export class DomWidgets {
  /** layer: an element over the canvas (position: absolute; inset: 0; pointer-events: none). */
  constructor(layer, { onEdit, readOnly } = {}) {
    this.layer = layer;
    this.onEdit = onEdit;
    this.readOnly = readOnly || (() => false);
    this.boxes = new Map(); // widget -> {el, frame, node}
    this.frame = 0;
  }

  /** The env.multiline hook given to node creation. */
  hook() {
    return (widget, node, ctx, width, y) => this.place(widget, node, ctx, width, y);
  }

  box(widget, node) {
    let b = this.boxes.get(widget);
    if (!b) {
      const el = h('textarea.dom-text', {
        spellcheck: false,
        placeholder: widget.options?.placeholder || widget.name,
        'aria-label': `${node.title}: ${widget.name}`,
        dataset: { node: String(node.id), widget: widget.name },
      });
      el.value = widget.value ?? '';
      el.addEventListener('input', () => {
        widget.value = el.value;
        widget.callback?.(el.value);
        this.onEdit?.(node, widget);
      });
      // Keys typed here belong to the text, not to canvas shortcuts (except Ctrl+Enter).
      el.addEventListener('keydown', (e) => { if (!(e.ctrlKey && e.key === 'Enter')) e.stopPropagation(); });
      b = { el, frame: -1, node };
      this.boxes.set(widget, b);
      this.layer.append(el);
    }
    b.node = node;
    return b;
  }

  place(widget, node, ctx, width, y) {
    const t = ctx.getTransform();
    const dpr = Math.max(1, window.devicePixelRatio || 1);
    const scale = t.a / dpr;
    const b = this.box(widget, node);
    if (scale < 0.45) {
      // Too small to type in: draw the text on the canvas instead.
      ctx.save();
      ctx.fillStyle = '#222';
      ctx.fillRect(10, y, width - 20, (widget.computedHeight || 60) - 4);
      ctx.restore();
      return;
    }
    b.frame = this.frame;
    const el = b.el;
    if (el.value !== (widget.value ?? '') && document.activeElement !== el) el.value = widget.value ?? '';
    const left = (t.a * 10 + t.e) / dpr;
    const top = (t.d * y + t.f) / dpr;
    const w = width - 20;
    const hgt = Math.max(24, (widget.computedHeight || 60) - 4);
    el.style.width = `${w}px`;
    el.style.height = `${hgt}px`;
    el.style.transform = `translate(${left}px, ${top}px) scale(${scale})`;
    el.readOnly = this.readOnly() || !!widget.computedDisabled;
    el.hidden = false;
  }

  /** Call before drawing a frame. */
  startFrame() {
    this.frame++;
  }

  /** Call after drawing a frame: hides what was not drawn, forgets removed nodes. */
  endFrame(graph) {
    for (const [widget, b] of this.boxes) {
      if (!b.node.graph || b.node.graph !== graph || !b.node.widgets?.includes(widget)) {
        b.el.remove();
        this.boxes.delete(widget);
      } else if (b.frame !== this.frame) {
        b.el.hidden = true;
      }
    }
  }

  clear() {
    for (const b of this.boxes.values()) b.el.remove();
    this.boxes.clear();
  }
}
