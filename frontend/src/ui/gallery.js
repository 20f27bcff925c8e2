// The gallery of output images: new outputs as they arrive (and the latest history outputs at
// start), newest first; a click opens the image large, with its download link and a button to
// open the workflow it carries.
import { h, clear, modal, toast } from './dom.js';
import { workflowFromBytes } from '../workflowFormat.js';

const MAX = 200;

export class Gallery {
  constructor(editor) {
    this.editor = editor;
    this.images = [];
    this.grid = h('div#gallery-grid');
    this.el = h('section#gallery.panel', h('div.panel-head', h('h3', 'Gallery')), this.grid);
    editor.execution.addEventListener('images', (e) => this.add(e.detail.images));
    editor.addEventListener('show-image', (e) => this.show(e.detail.image));
  }

  key(im) {
    return `${im.type}/${im.subfolder}/${im.filename}`;
  }

  add(images, atEnd = false) {
    const known = new Set(this.images.map((i) => this.key(i)));
    const fresh = images.filter((i) => i.type !== 'temp' || !atEnd).filter((i) => !known.has(this.key(i)));
    this.images = atEnd ? [...this.images, ...fresh] : [...fresh.reverse(), ...this.images];
    this.images.length = Math.min(this.images.length, MAX);
    this.render();
  }

  /** Fills the gallery from /history (newest first). */
  async loadHistory() {
    if (!this.editor.can('history:read')) return;
    try {
      const hist = await this.editor.api.history(30);
      const entries = Object.values(hist).sort((a, b) => (b.prompt?.[0] ?? 0) - (a.prompt?.[0] ?? 0));
      this.add(entries.flatMap((e) => Object.values(e.outputs || {}).flatMap((o) => o.images || [])), true);
    } catch { /* the queue panel reports read errors */ }
  }

  render() {
    clear(this.grid, this.images.length ? this.images.map((im) => h('img.gallery-img', {
      src: this.editor.api.viewUrl(im), alt: im.filename, title: im.filename, loading: 'lazy',
      onclick: () => this.show(im),
    })) : h('div.muted', 'Images your prompts make appear here'));
  }

  async show(im) {
    const url = this.editor.api.viewUrl(im);
    const v = await modal(im.filename, [
      h('img.lightbox', { src: url, alt: im.filename }),
      h('p', h('a', { href: url, download: im.filename }, 'Download')),
    ], [{ label: 'Open its workflow', value: 'open' }, { label: 'Close', value: null, primary: true }]);
    if (v !== 'open') return;
    try {
      const bytes = new Uint8Array(await (await this.editor.api.request('GET', url.replace(this.editor.api.base, ''), { raw: true })).arrayBuffer());
      this.editor.load(await workflowFromBytes(bytes), { name: im.filename.replace(/\.png$/i, ''), source: 'image' });
    } catch (e) {
      toast(`Cannot open the workflow: ${e.message}`, 'error');
    }
  }
}
