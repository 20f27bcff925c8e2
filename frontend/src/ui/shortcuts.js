// Keyboard shortcuts of the editor (ComfyUI's): Ctrl+Enter queue, Ctrl+Shift+Enter queue
// first, Ctrl+Z / Ctrl+Y undo and redo, Ctrl+S save, Ctrl+O open a file, Ctrl+B bypass and
// Ctrl+M mute the selected nodes, Ctrl+G group them. Copy/paste/delete are litegraph's own.
import { LGraphGroup } from '@comfyorg/litegraph';
import { MODE_BYPASS, MODE_NEVER } from '../graphToPrompt.js';

/** Toggles `mode` on the selected nodes (all get it unless all have it already). */
export function toggleMode(editor, mode) {
  const nodes = Object.values(editor.canvas.selected_nodes || {});
  if (!nodes.length || editor.readOnly) return;
  const all = nodes.every((n) => n.mode === mode);
  for (const n of nodes) n.mode = all ? 0 : mode;
  editor.canvas.setDirty(true, true);
  editor.changed();
}

/** Puts the selected nodes in a new group. */
export function groupSelected(editor) {
  const nodes = Object.values(editor.canvas.selected_nodes || {});
  if (!nodes.length || editor.readOnly) return null;
  const g = new LGraphGroup('Group');
  editor.graph.add(g);
  g.resizeTo(nodes, 10);
  editor.canvas.setDirty(true, true);
  editor.changed();
  return g;
}

export function installShortcuts(editor, { save, openFile }) {
  document.addEventListener('keydown', (e) => {
    const ctrl = e.ctrlKey || e.metaKey;
    // Not while another page (API keys) is shown instead of the editor.
    if (!ctrl || editor.canvas.canvas.offsetParent === null) return;
    const inText = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target?.tagName || '') || e.target?.isContentEditable;
    const k = e.key.toLowerCase();
    let handled = true;
    if (k === 'enter') {
      if (e.altKey) editor.interrupt();
      else editor.queue({ front: e.shiftKey });
    } else if (inText) {
      handled = false;
    } else if (k === 'z' && !e.shiftKey) editor.undo();
    else if (k === 'y' || (k === 'z' && e.shiftKey)) editor.redo();
    else if (k === 's') save();
    else if (k === 'o') openFile();
    else if (k === 'b') toggleMode(editor, MODE_BYPASS);
    else if (k === 'm') toggleMode(editor, MODE_NEVER);
    else if (k === 'g') groupSelected(editor);
    else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }, true);
}
