// Files and node types dropped on the canvas, and images pasted: a node type from the library
// is added where it is dropped; an image dropped on (or pasted into) an image-loading node is
// uploaded into it; a JSON file or a PNG carrying a workflow replaces the graph.
import { NODE_MIME } from './nodeLibrary.js';
import { uploadCombo } from './upload.js';
import { toast } from './dom.js';

function nodeAt(editor, e) {
  const pos = editor.canvas.convertEventToCanvasOffset(e);
  return editor.graph.getNodeOnPos(pos[0], pos[1], editor.canvas.visible_nodes);
}

export function installDropzone(editor, wrap) {
  wrap.addEventListener('dragover', (e) => {
    const types = [...(e.dataTransfer?.types || [])];
    if (types.includes('Files') || types.includes(NODE_MIME)) {
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    }
  });
  wrap.addEventListener('drop', async (e) => {
    const type = e.dataTransfer?.getData(NODE_MIME);
    const file = e.dataTransfer?.files?.[0];
    if (!type && !file) return;
    e.preventDefault();
    e.stopPropagation();
    if (type) {
      editor.addNode(type, editor.canvas.convertEventToCanvasOffset(e));
      return;
    }
    const target = nodeAt(editor, e);
    const combo = uploadCombo(target);
    if (combo && file.type.startsWith('image/') && !editor.readOnly) {
      await editor.uploads.upload(target, combo, file);
      return;
    }
    try {
      await editor.loadFile(file);
    } catch (err) {
      toast(`Cannot open ${file.name}: ${err.message}`, 'error');
    }
  });
  document.addEventListener('paste', async (e) => {
    const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith('image/'));
    if (!file || editor.readOnly || /^(INPUT|TEXTAREA)$/.test(e.target?.tagName || '')) return;
    const node = Object.values(editor.canvas.selected_nodes || {}).find((n) => uploadCombo(n));
    if (!node) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    await editor.uploads.upload(node, uploadCombo(node), file);
  }, true);
}
