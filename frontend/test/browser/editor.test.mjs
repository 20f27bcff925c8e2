// The editor in headless Chromium against the real `weft serve` (authentication on, the tiny
// demo checkpoint): log in, build the text-to-image workflow with the mouse and the search box,
// queue it, watch progress and latent previews, get the output image, save the workflow to the
// library, reload and open it, share it with a second user who can open but not change it, and
// check that user sees none of the first user's history. Steps run in order on one server.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startWeft } from './lib/server.mjs';
import { launch, newPage, withShots } from './lib/browser.mjs';
import { addNodeBySearch, clickTitle, jsErrors, link, login, newWorkflow, setNumber, typeText } from './lib/editor.mjs';

const PW = 'correct horse battery staple';
let srv;
let browser;
let alice;
let bob;
const pages = () => [alice, bob];
const ids = {};

before(async () => {
  srv = await startWeft();
  await srv.addUser('alice', 'editor', PW);
  await srv.addUser('bob', 'user', PW);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

test('a wrong password is refused; the right one opens the editor', async (t) => withShots(t, pages, async () => {
  alice = await newPage(browser, 'alice');
  await alice.goto(`${srv.url}/`);
  await alice.fill('#login-user', 'alice');
  await alice.fill('#login-password', 'not the password');
  await alice.click('#login-submit');
  await alice.locator('#login-error').filter({ hasText: 'Wrong user name or password' }).waitFor();
  await login(alice, srv.url, 'alice', PW);
  assert.equal(await alice.textContent('#user-name'), 'alice (editor)');
  // An editor may share but not manage keys.
  assert.equal(await alice.locator('#btn-keys').count(), 0);
  // A new user starts with the default text-to-image graph.
  assert.equal(await alice.evaluate(() => window.weft.graph._nodes.length), 7);
}));

test('builds txt2img with real mouse actions and the search box', async (t) => withShots(t, pages, async () => {
  await newWorkflow(alice);
  const box = await alice.locator('#graph-canvas').boundingBox();
  const at = (x, y) => [box.x + x, box.y + y];
  ids.ckpt = await addNodeBySearch(alice, ...at(30, 330), 'load checkpoint', 'CheckpointLoaderSimple');
  ids.pos = await addNodeBySearch(alice, ...at(330, 50), 'clip text encode', 'CLIPTextEncode');
  ids.neg = await addNodeBySearch(alice, ...at(330, 300), 'CLIPTextEncode', 'CLIPTextEncode');
  ids.latent = await addNodeBySearch(alice, ...at(330, 560), 'empty latent', 'EmptyLatentImage');
  ids.ks = await addNodeBySearch(alice, ...at(780, 50), 'ksampler', 'KSampler');
  ids.dec = await addNodeBySearch(alice, ...at(780, 420), 'vae decode', 'VAEDecode');
  ids.save = await addNodeBySearch(alice, ...at(1060, 420), 'save image', 'SaveImage');
  await link(alice, ids.ckpt, 0, ids.ks, 'model');
  await link(alice, ids.ckpt, 1, ids.pos, 'clip');
  await link(alice, ids.ckpt, 1, ids.neg, 'clip');
  await link(alice, ids.pos, 0, ids.ks, 'positive');
  await link(alice, ids.neg, 0, ids.ks, 'negative');
  await link(alice, ids.latent, 0, ids.ks, 'latent_image');
  await link(alice, ids.ks, 0, ids.dec, 'samples');
  await link(alice, ids.ckpt, 2, ids.dec, 'vae');
  await link(alice, ids.dec, 0, ids.save, 'images');
  await typeText(alice, ids.pos, 'text', 'a glass bottle in a meadow');
  await typeText(alice, ids.neg, 'text', 'blurry');
  await setNumber(alice, ids.latent, 'width', 64);
  await setNumber(alice, ids.latent, 'height', 64);
  await setNumber(alice, ids.ks, 'steps', 2);
  await setNumber(alice, ids.ks, 'seed', 42);
  // Links are typed: a CLIP output does not connect to an IMAGE input.
  const refused = await alice.evaluate(({ ckpt, save }) => {
    const g = window.weft.graph;
    return g.getNodeById(ckpt).connect(1, g.getNodeById(save), 0);
  }, ids);
  assert.equal(refused, null);
  const prompt = await alice.evaluate(() => JSON.parse(window.weft.apiJson()));
  assert.deepEqual(Object.values(prompt).map((n) => n.class_type).sort(),
    ['CLIPTextEncode', 'CLIPTextEncode', 'CheckpointLoaderSimple', 'EmptyLatentImage', 'KSampler', 'SaveImage', 'VAEDecode']);
  assert.deepEqual(prompt[ids.latent].inputs, { width: 64, height: 64, batch_size: 1 });
  assert.equal(prompt[ids.ks].inputs.steps, 2);
  assert.equal(prompt[ids.ks].inputs.seed, 42);
  assert.equal(prompt[ids.ckpt].inputs.ckpt_name, 'weft-demo-tiny.safetensors');
  assert.equal(prompt[ids.pos].inputs.text, 'a glass bottle in a meadow');
  assert.deepEqual(jsErrors(alice), []);
}));

test('queues it and shows progress, latent previews and the output image', async (t) => withShots(t, pages, async () => {
  await alice.evaluate(() => {
    const seen = { progress: [], running: new Set(), previews: 0 };
    window.__seen = seen;
    const ex = window.weft.execution;
    ex.addEventListener('progress', (e) => {
      if (e.detail.overall != null) seen.progress.push(Math.round(e.detail.overall * 100));
      const bar = document.getElementById('progress-bar');
      if (bar.classList.contains('active')) seen.barShown = true;
      if (window.weft.canvas.runningNodeId != null) seen.running.add(window.weft.canvas.runningNodeId);
      const ks = window.weft.graph._nodes.find((n) => n.type === 'KSampler');
      if (ks.progress > 0) seen.nodeBar = true;
    });
    ex.addEventListener('preview', () => { seen.previews++; });
  });
  await alice.click('#btn-queue');
  // The output arrives on the Save Image node and in the gallery.
  await alice.waitForFunction((id) => {
    const n = window.weft.graph.getNodeById(id);
    return n.imgs?.[0]?.complete && n.imgs[0].naturalWidth === 64;
  }, ids.save, { timeout: 60000 });
  const seen = await alice.evaluate(() => ({ ...window.__seen, running: [...window.__seen.running] }));
  assert.ok(seen.barShown, 'the overall progress bar was shown');
  assert.ok(seen.nodeBar, 'the KSampler had a progress bar');
  assert.ok(seen.previews >= 1, `latent previews seen: ${seen.previews}`);
  assert.ok(seen.running.includes(ids.ks), `running nodes outlined: ${seen.running}`);
  assert.ok(seen.progress.some((p) => p > 0 && p < 100), `overall progress went through ${seen.progress}`);
  assert.equal(seen.progress.at(-1), 100);
  await alice.waitForFunction(() => document.getElementById('progress-fill').style.width === '0%');
  // Seed control "randomize" moved the seed after queueing.
  assert.notEqual(await alice.evaluate((id) => window.weft.graph.getNodeById(id).widgets[0].value, ids.ks), 42);
  // History: one success with a thumbnail; gallery: the image.
  await alice.locator('#history-list .h-item.success .thumb').first().waitFor();
  await alice.click('#side-tabs [data-tab=gallery]');
  await alice.locator('#gallery-grid img.gallery-img').first().waitFor();
  // The server ran exactly what the editor showed, and the PNG carries the workflow.
  const hist = await srv.fetch('/history');
  const entries = Object.values(hist.json);
  assert.equal(entries.length, 1);
  assert.equal(entries[0].prompt[2][ids.latent].inputs.width, 64);
  assert.equal(entries[0].prompt[3].extra_pnginfo.workflow.nodes.length, 7);
  const img = Object.values(entries[0].outputs)[0].images[0];
  const bytes = readFileSync(path.join(srv.baseDir, 'output', img.subfolder, img.filename));
  const { pngText } = await import('../../src/png.js');
  const text = await pngText(new Uint8Array(bytes));
  assert.equal(JSON.parse(text.workflow).nodes.length, 7);
  assert.equal(JSON.parse(text.prompt)[ids.ks].inputs.steps, 2);
  // Dropping that PNG on the canvas opens the workflow it carries.
  await newWorkflow(alice);
  await alice.evaluate(({ name, data }) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(data)], name, { type: 'image/png' }));
    const target = document.getElementById('graph-canvas');
    for (const t of ['dragenter', 'dragover', 'drop']) target.dispatchEvent(new DragEvent(t, { dataTransfer: dt, clientX: 800, clientY: 600, bubbles: true, cancelable: true }));
  }, { name: img.filename, data: [...bytes] });
  await alice.waitForFunction(() => window.weft.graph._nodes.length === 7);
  assert.equal(await alice.textContent('#doc-title'), img.filename.replace('.png', ''));
  assert.equal(await alice.evaluate((id) => JSON.parse(window.weft.apiJson())[id].inputs.width, ids.latent), 64);
  await alice.click('#side-tabs [data-tab=queue]');
}));

test('saves it to the library; after a reload it opens from there', async (t) => withShots(t, pages, async () => {
  await alice.click('#btn-save');
  const name = alice.locator('.modal input');
  await name.fill('bottle');
  await name.press('Enter');
  await alice.locator('.toast.ok', { hasText: 'Saved bottle' }).waitFor();
  assert.equal(await alice.textContent('#doc-title'), 'bottle');
  const onDisk = JSON.parse(readFileSync(path.join(srv.baseDir, 'user/alice/workflows/bottle.json'), 'utf8'));
  assert.equal(onDisk.nodes.length, 7);
  await alice.reload();
  await alice.waitForFunction(() => window.weft?.graph?._nodes.length === 7);
  // The reload kept the session and the open document; now start empty and open from the list.
  await newWorkflow(alice);
  await alice.click('#side-tabs [data-tab=library]');
  await alice.click('#library-mine .wf-open:text("bottle")');
  await alice.waitForFunction(() => window.weft.graph._nodes.length === 7);
  const w = await alice.evaluate((id) => window.weft.graph.getNodeById(id).widgets.find((x) => x.name === 'width').value, ids.latent);
  assert.equal(w, 64);
  assert.equal(await alice.textContent('#doc-title'), 'bottle');
  // Rename through the list, then save a second copy and delete it.
  await alice.click('#library-mine [data-path="workflows/bottle.json"] .wf-rename');
  await alice.locator('.modal input').fill('meadow');
  await alice.locator('.modal input').press('Enter');
  await alice.locator('#library-mine [data-path="workflows/meadow.json"]').waitFor();
  assert.equal(await alice.textContent('#doc-title'), 'meadow');
  await alice.click('#btn-save-as');
  await alice.locator('.modal input').fill('scratch');
  await alice.locator('.modal input').press('Enter');
  await alice.locator('#library-mine [data-path="workflows/scratch.json"]').waitFor();
  await alice.click('#library-mine [data-path="workflows/scratch.json"] .wf-delete');
  await alice.click('.modal button.danger');
  await alice.locator('#library-mine [data-path="workflows/scratch.json"]').waitFor({ state: 'detached' });
  await alice.click('#library-mine .wf-open:text("meadow")');
  await alice.waitForFunction(() => document.getElementById('doc-title').textContent === 'meadow');
  assert.deepEqual(jsErrors(alice), []);
}));

test('shares it with a second user, who can open but not change it', async (t) => withShots(t, pages, async () => {
  await alice.click('#library-mine [data-path="workflows/meadow.json"] .wf-share');
  await alice.fill('#share-users', 'bob');
  await alice.click('.modal button.primary');
  await alice.locator('.toast.ok', { hasText: 'Sharing saved' }).waitFor();
  const before = readFileSync(path.join(srv.baseDir, 'user/alice/workflows/meadow.json'), 'utf8');

  bob = await newPage(browser, 'bob');
  await login(bob, srv.url, 'bob', PW);
  // A "user" role cannot share.
  await bob.click('#side-tabs [data-tab=library]');
  const item = bob.locator('#library-shared .wf-item[data-owner="alice"]');
  await item.waitFor();
  assert.equal(await bob.locator('.wf-share').count(), 0);
  await item.locator('.wf-open-shared').click();
  await bob.waitForFunction(() => window.weft.graph._nodes.length === 7);
  assert.match(await bob.textContent('#doc-badge'), /shared by alice · read only/);
  assert.equal(await bob.isDisabled('#btn-save'), true);
  assert.equal(await bob.evaluate(() => window.weft.canvas.read_only), true);
  // Dragging a node and pressing Delete change nothing.
  const before2 = await bob.evaluate(() => JSON.stringify(window.weft.graph.serialize().nodes.map((n) => [n.id, n.pos])));
  const ksId = await bob.evaluate(() => window.weft.graph._nodes.find((n) => n.type === 'KSampler').id);
  await clickTitle(bob, ksId);
  const [x, y] = await bob.evaluate((id) => { const e = window.weft; const n = e.graph.getNodeById(id); return e.canvas.toPage([n.pos[0] + 60, n.pos[1] - 15]); }, ksId);
  await bob.mouse.move(x, y);
  await bob.mouse.down();
  await bob.mouse.move(x + 150, y + 120, { steps: 6 });
  await bob.mouse.up();
  await bob.keyboard.press('Delete');
  await bob.keyboard.press('Control+z');
  const after2 = await bob.evaluate(() => JSON.stringify(window.weft.graph.serialize().nodes.map((n) => [n.id, n.pos])));
  assert.equal(after2, before2);
  const text = bob.locator('textarea.dom-text').first();
  assert.equal(await text.getAttribute('readonly'), '');
  // Alice's file is unchanged; bob can keep his own copy.
  assert.equal(readFileSync(path.join(srv.baseDir, 'user/alice/workflows/meadow.json'), 'utf8'), before);
  await bob.click('#btn-copy');
  await bob.locator('.modal input').press('Enter');
  await bob.locator('.toast.ok', { hasText: 'Saved meadow (copy)' }).waitFor();
  assert.equal(await bob.evaluate(() => window.weft.canvas.read_only), false);
  assert.ok(readFileSync(path.join(srv.baseDir, 'user/bob/workflows/meadow (copy).json'), 'utf8').length > 100);
  assert.equal(readFileSync(path.join(srv.baseDir, 'user/alice/workflows/meadow.json'), 'utf8'), before);
  assert.deepEqual(jsErrors(bob), []);
}));

test("the second user sees none of the first user's history or outputs", async (t) => withShots(t, pages, async () => {
  await bob.click('#side-tabs [data-tab=queue]');
  await bob.locator('#history-list .muted', { hasText: 'No finished prompts' }).waitFor();
  assert.equal(await bob.locator('#history-list .h-item').count(), 0);
  await bob.click('#side-tabs [data-tab=gallery]');
  assert.equal(await bob.locator('#gallery-grid img').count(), 0);
  const r = await bob.evaluate(async () => (await fetch('/history')).json());
  assert.deepEqual(r, {});
  // Alice still sees hers, and can re-open the workflow it ran.
  await alice.click('#side-tabs [data-tab=queue]');
  assert.equal(await alice.locator('#history-list .h-item').count(), 1);
  await newWorkflow(alice);
  await alice.click('#history-list .h-item .q-open');
  await alice.waitForFunction(() => window.weft.graph._nodes.length === 7);
  assert.match(await alice.textContent('#doc-title'), /^Prompt [0-9a-f]{8}$/);
}));
