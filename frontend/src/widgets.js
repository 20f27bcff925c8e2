// Widgets for /object_info input specs: INT, FLOAT, STRING (one line or multiline), BOOLEAN,
// COMBO, the seed's control_after_generate companion and the image upload button. Created in
// exactly ComfyUI's order (companions right after their widget) so that widgets_values of
// workflows saved by ComfyUI's editor line up. No DOM here: the browser passes `env` hooks
// (multiline text boxes, the upload dialog), and Node tests pass none.

export const WIDGET_TYPES = new Set(['INT', 'FLOAT', 'STRING', 'BOOLEAN', 'COMBO']);
export const CONTROL_VALUES = ['fixed', 'increment', 'decrement', 'randomize'];
export const CONTROL_NAME = 'control_after_generate';

/** {type, options, values?} of one input spec: V1 combos ([[...], {...}]) and V2 combos
 * (["COMBO", {options: [...]}]) both become type "COMBO" with `values`. */
export function normaliseSpec(spec) {
  const raw = Array.isArray(spec) ? spec : [spec];
  const options = (raw[1] && typeof raw[1] === 'object') ? raw[1] : {};
  if (Array.isArray(raw[0])) return { type: 'COMBO', options, values: raw[0].slice() };
  const type = String(raw[0] ?? '*');
  if (type === 'COMBO') {
    const values = Array.isArray(options.options) ? options.options.slice() : [];
    return { type, options, values };
  }
  return { type, options };
}

/** True when the input is edited by a widget rather than only fed by a link. */
export function isWidgetInput(norm) {
  return WIDGET_TYPES.has(norm.type) && !norm.options.forceInput;
}

/** Decimal places a step or rounding value implies (0.01 → 2). */
export function decimalsOf(x) {
  if (!Number.isFinite(x) || x <= 0 || x >= 1) return 0;
  const s = String(x);
  if (s.includes('e-')) return Math.min(10, Number(s.split('e-')[1]));
  return Math.min(10, (s.split('.')[1] || '').length);
}

function finite(v, fallback) {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

/** Rounds an INT to a whole multiple of its step (counted from min when min is finite). */
export function roundInt(v, opts) {
  const step = finite(opts.step2, 1) || 1;
  const min = finite(opts.min, 0);
  let r = Number.isSafeInteger(v) && step === 1 ? v : min + Math.round((v - min) / step) * step;
  if (!Number.isFinite(r)) r = min;
  return r;
}

/** Rounds a FLOAT to its `round` quantum (or its precision). */
export function roundFloat(v, opts) {
  const q = finite(opts.round, 0);
  let r = q > 0 ? Math.round(v / q) * q : v;
  const p = finite(opts.precision, 3);
  r = Number(r.toFixed(p));
  return r;
}

function clampTo(v, opts) {
  if (typeof opts.min === 'number' && v < opts.min) return opts.min;
  if (typeof opts.max === 'number' && v > opts.max) return opts.max;
  return v;
}

/** Wraps a number widget's setValue so typed or dragged values are clamped and rounded. */
function installRounding(w, kind) {
  const base = w.setValue?.bind(w);
  if (!base) return;
  w.setValue = (value, o) => {
    let v = Number(value);
    if (!Number.isFinite(v)) return;
    v = clampTo(kind === 'INT' ? roundInt(v, w.options) : roundFloat(v, w.options), w.options);
    base(v, o);
  };
}

function numberOptions(kind, o) {
  if (kind === 'INT') {
    const step = finite(o.step, 1) || 1;
    return { min: finite(o.min, -Number.MAX_SAFE_INTEGER), max: finite(o.max, Number.MAX_SAFE_INTEGER), step2: step, step: step * 10, precision: 0 };
  }
  const step = finite(o.step, 0.1) || 0.1;
  const round = o.round === false ? 0 : finite(o.round, step);
  const precision = Math.max(decimalsOf(round), decimalsOf(step));
  return {
    min: finite(o.min, -Number.MAX_VALUE), max: finite(o.max, Number.MAX_VALUE),
    step2: step, step: step * 10, precision, round,
  };
}

function wantsControl(name, norm) {
  const c = norm.options.control_after_generate;
  if (c !== undefined) return !!c;
  return norm.type === 'INT' && (name === 'seed' || name === 'noise_seed');
}

/** The combo companion that changes `target` after each queued prompt. It stays in
 * widgets_values (ComfyUI saves it) but never in the API prompt. */
export function addControlWidget(node, target, defaultValue = 'randomize') {
  const value = CONTROL_VALUES.includes(defaultValue) ? defaultValue : 'randomize';
  const w = node.addWidget('combo', CONTROL_NAME, value, () => {}, { values: CONTROL_VALUES.slice(), serialize: false });
  w.valueWidget = target;
  target.controlWidget = w;
  target.linkedWidgets = [...(target.linkedWidgets || []), w];
  return w;
}

/** A multiline text box. The value lives here; in the browser env.multiline draws a textarea
 * over the canvas at the widget's place (see ui/domWidgets.js). */
export function addMultilineWidget(node, name, value, env = {}, extra = {}) {
  const w = {
    type: 'customtext',
    name,
    value: value ?? '',
    options: { multiline: true, ...extra },
    y: 0,
    draw(ctx, n, width, y) {
      if (env.multiline) env.multiline(this, n, ctx, width, y);
    },
    computeLayoutSize() {
      return { minHeight: 60, maxHeight: 1000, minWidth: 200 };
    },
  };
  return node.addCustomWidget(w);
}

/**
 * Adds the widget(s) for one input and returns [{widget, socketType}] for the widgets that get
 * a widget input socket (the value widget and the upload button; never the control combo).
 */
export function addInputWidgets(node, name, norm, env = {}) {
  const o = norm.options;
  const made = [];
  const cb = () => {};
  switch (norm.type) {
    case 'INT':
    case 'FLOAT': {
      const opts = numberOptions(norm.type, o);
      let v = finite(o.default, finite(o.min, 0));
      v = clampTo(v, opts);
      const w = node.addWidget('number', name, v, cb, opts);
      installRounding(w, norm.type);
      made.push({ widget: w, socketType: norm.type });
      if (wantsControl(name, norm)) {
        const c = o.control_after_generate;
        addControlWidget(node, w, typeof c === 'string' ? c : 'randomize');
      }
      break;
    }
    case 'STRING': {
      const v = typeof o.default === 'string' ? o.default : '';
      const w = o.multiline ? addMultilineWidget(node, name, v, env, { dynamicPrompts: !!o.dynamicPrompts })
        : node.addWidget('text', name, v, cb, {});
      if (o.placeholder) w.options.placeholder = o.placeholder;
      made.push({ widget: w, socketType: 'STRING' });
      break;
    }
    case 'BOOLEAN': {
      const opts = {};
      if (o.label_on) opts.on = o.label_on;
      if (o.label_off) opts.off = o.label_off;
      const w = node.addWidget('toggle', name, !!o.default, cb, opts);
      made.push({ widget: w, socketType: 'BOOLEAN' });
      break;
    }
    case 'COMBO': {
      const values = norm.values;
      const v = o.default !== undefined && values.includes(o.default) ? o.default : (values[0] ?? '');
      const w = node.addWidget('combo', name, v, cb, { values });
      made.push({ widget: w, socketType: 'COMBO' });
      if (o.control_after_generate) addControlWidget(node, w, typeof o.control_after_generate === 'string' ? o.control_after_generate : 'randomize');
      if (o.image_upload) {
        const up = node.addWidget('button', 'upload', 'image', () => env.upload?.(node, w), { serialize: false });
        up.label = 'choose file to upload';
        up.uploadFor = w;
        w.uploadWidget = up;
        made.push({ widget: up, socketType: 'IMAGEUPLOAD' });
      }
      break;
    }
    default:
      break;
  }
  for (const m of made) if (o.tooltip && !m.widget.tooltip) m.widget.tooltip = o.tooltip;
  return made;
}
