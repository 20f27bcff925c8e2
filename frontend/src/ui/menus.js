// Additions to litegraph's context menus: bypass and mute on nodes, "queue this output",
// grouping the selection; and removal of litegraph's subgraph conversion, which the server
// cannot run.
import { LGraphNode } from '@comfyorg/litegraph';
import { MODE_BYPASS, MODE_NEVER } from '../graphToPrompt.js';
import { groupSelected, toggleMode } from './shortcuts.js';

const dropSubgraph = (options) => {
  for (let i = options.length - 1; i >= 0; i--) if (options[i]?.content?.startsWith('Convert to Subgraph')) options.splice(i, 1);
};

export function installMenus(editor, canvas) {
  canvas.getExtraMenuOptions = (_c, options) => {
    dropSubgraph(options);
    if (editor.readOnly) {
      options.length = 0;
      return [];
    }
    return Object.keys(canvas.selected_nodes).length ? [null, { content: 'Group selected nodes', callback: () => groupSelected(editor) }] : [];
  };
  LGraphNode.prototype.getExtraMenuOptions = function getExtraMenuOptions(_c, options) {
    dropSubgraph(options);
    if (editor.readOnly) return [];
    if (!canvas.selected_nodes[this.id]) canvas.selectNode(this);
    const extra = [
      { content: this.mode === MODE_BYPASS ? 'Remove bypass' : 'Bypass', callback: () => toggleMode(editor, MODE_BYPASS) },
      { content: this.mode === MODE_NEVER ? 'Unmute' : 'Mute', callback: () => toggleMode(editor, MODE_NEVER) },
    ];
    if (this.isOutputNode && editor.can('prompt:submit')) {
      extra.push({ content: 'Queue this output', callback: () => editor.queue({ targets: editor.selectedOutputs().length ? editor.selectedOutputs() : [this.id] }) });
    }
    if (this.weftImages?.length) {
      extra.push({ content: 'Open image', callback: () => editor.emit('show-image', { image: this.weftImages[this.imageIndex ?? 0] }) });
    }
    return extra;
  };
}
