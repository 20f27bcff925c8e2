// control_after_generate: after a prompt is queued, every widget with a control companion moves
// to its next value (fixed, increment, decrement, randomize), as ComfyUI's editor does by
// default. Pure: the random source is a parameter so tests are exact.

// Random seeds stay below 2^50 so that they are exact in a double and in JSON.
const RANDOM_LIMIT = 1125899906842624;

/** The value that `mode` gives after `value` for a widget with `options` and combo `values`. */
export function nextValue(mode, value, options = {}, values = null, random = Math.random) {
  if (mode === 'fixed' || !mode) return value;
  if (Array.isArray(values)) {
    if (!values.length) return value;
    let i = values.indexOf(value);
    if (mode === 'increment') i = Math.min(values.length - 1, i + 1);
    else if (mode === 'decrement') i = Math.max(0, i - 1);
    else if (mode === 'randomize') i = Math.floor(random() * values.length);
    else return value;
    return values[Math.max(0, i)];
  }
  const step = Number(options.step2) || 1;
  const min = Math.max(-RANDOM_LIMIT, typeof options.min === 'number' ? options.min : 0);
  const max = Math.min(RANDOM_LIMIT, typeof options.max === 'number' ? options.max : RANDOM_LIMIT);
  let v = Number(value);
  if (mode === 'increment') v += step;
  else if (mode === 'decrement') v -= step;
  else if (mode === 'randomize') v = min + Math.floor(random() * ((max - min) / step)) * step;
  else return value;
  if (v < min) v = min;
  if (v > max) v = max;
  if (options.precision !== undefined) v = Number(v.toFixed(options.precision));
  return v;
}

function comboValues(w) {
  const v = w.options?.values;
  if (typeof v === 'function') return v(w);
  return Array.isArray(v) ? v : null;
}

/** Applies every control widget of the graph (nodes in any mode, like ComfyUI). Returns the
 * number of widgets whose value changed. `onChange(node, widget)` is told about each. */
export function applyControls(graph, { random = Math.random, onChange } = {}) {
  let changed = 0;
  for (const node of graph._nodes || graph.nodes || []) {
    for (const w of node.widgets || []) {
      const c = w.controlWidget;
      if (!c) continue;
      const before = w.value;
      const after = nextValue(c.value, before, w.options, w.type === 'combo' ? comboValues(w) : null, random);
      if (after !== before) {
        w.value = after;
        changed++;
        node.onWidgetValueSet?.(w);
        onChange?.(node, w);
      }
    }
  }
  return changed;
}
