// Image inputs (LoadImage and any combo with image_upload): the upload button opens a file
// chooser, dropped or pasted images upload too; the chosen file is shown on the node.
import { toast } from './dom.js';

/** The combo widget of a node that takes uploaded images, or undefined. */
export function uploadCombo(node) {
  return node?.widgets?.find((w) => w.uploadWidget);
}

function valueOf(r) {
  return r.subfolder ? `${r.subfolder}/${r.name}` : r.name;
}

export class Uploads {
  constructor(editor) {
    this.editor = editor;
  }

  /** env.upload: the button was clicked. */
  choose(node, combo) {
    if (this.editor.readOnly) return;
    if (!this.editor.can('upload')) {
      toast('Your role cannot upload images.', 'error');
      return;
    }
    const input = document.createElement('input');
    input.type = 'file';
    input.accept = 'image/png,image/jpeg,image/webp';
    input.style.display = 'none';
    input.addEventListener('change', () => {
      const f = input.files?.[0];
      input.remove();
      if (f) this.upload(node, combo, f);
    });
    document.body.append(input);
    input.click();
  }

  async upload(node, combo, file) {
    try {
      const r = await this.editor.api.uploadImage(file);
      const v = valueOf(r);
      const values = combo.options.values;
      if (Array.isArray(values) && !values.includes(v)) values.push(v);
      combo.value = v;
      combo.callback?.(v);
      this.showPreview(node);
      this.editor.changed();
      toast(`Uploaded ${v}`, 'ok');
    } catch (e) {
      toast(`Upload failed: ${e.message}`, 'error');
    }
  }

  /** Shows the combo's current file on the node (from input/). */
  showPreview(node) {
    const combo = uploadCombo(node);
    if (!combo?.value) {
      node.imgs = null;
      return;
    }
    const v = String(combo.value);
    const slash = v.lastIndexOf('/');
    const img = new Image();
    img.onload = () => node.setDirtyCanvas?.(true, true);
    img.src = this.editor.api.viewUrl({ filename: v.slice(slash + 1), subfolder: slash > 0 ? v.slice(0, slash) : '', type: 'input' });
    node.imgs = [img];
    node.imageIndex = 0;
  }

  /** env.onCreated / onConfigured: image nodes preview their file and follow changes. */
  attach(node) {
    const combo = uploadCombo(node);
    if (!combo || combo.weftPreview) return;
    combo.weftPreview = true;
    const prev = combo.callback;
    combo.callback = (...a) => {
      prev?.(...a);
      this.showPreview(node);
    };
    queueMicrotask(() => this.showPreview(node));
  }
}
