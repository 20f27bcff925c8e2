// More of the editor against the real server: image upload with preview, workflows dropped as
// PNG or JSON (ComfyUI's invert graph with a primitive, reroute, bypassed and muted nodes runs
// unchanged), export, validation errors on the offending node and input, editing shortcuts
// (copy/paste, undo/redo, bypass, mute, group), queue front / cancel / interrupt, share links,
// the admin key page, what each role is shown, and logging out.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO, startWeft } from './lib/server.mjs';
import { launch, newPage, withShots } from './lib/browser.mjs';
import { addNodeBySearch, clickTitle, clickWidget, jsErrors, link, login, newWorkflow, setNumber } from './lib/editor.mjs';
import { png, tEXt } from '../lib/pngWriter.mjs';

const PW = 'correct horse battery staple';
let srv;
let browser;
const open = [];
const pages = () => open;

async function page(name, user, password = PW) {
  const p = await newPage(browser, name);
  open.push(p);
  await login(p, srv.url, user, password);
  return p;
}

/** Drops a file (bytes) on the canvas at page (x, y) through a real drop event. */
async function dropFile(p, name, type, bytes, x = 900, y = 500) {
  await p.evaluate(({ name, type, data, x, y }) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(data)], name, { type }));
    const target = document.elementFromPoint(x, y);
    for (const t of ['dragenter', 'dragover', 'drop']) {
      target.dispatchEvent(new DragEvent(t, { dataTransfer: dt, clientX: x, clientY: y, bubbles: true, cancelable: true }));
    }
  }, { name, type, data: [...bytes], x, y });
}

const workflow = (f) => readFileSync(path.join(REPO, 'workflows', f));
const count = (p) => p.evaluate(() => window.weft.graph._nodes.length);

before(async () => {
  srv = await startWeft();
  await srv.addUser('alice', 'editor', PW);
  await srv.addUser('bob', 'user', PW);
  await srv.addUser('vera', 'viewer', PW);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

let alice;

test('uploads an image into Load Image and shows it on the node', async (t) => withShots(t, pages, async () => {
  alice = await page('alice', 'alice');
  await newWorkflow(alice);
  await alice.fill('#node-search', 'load image');
  await alice.click('#node-list .node-item[data-type="LoadImage"]');
  const id = await alice.evaluate(() => window.weft.graph._nodes[0].id);
  const chooser = alice.waitForEvent('filechooser');
  await clickWidget(alice, id, 'upload');
  const image = png();
  await (await chooser).setFiles({ name: 'dot.png', mimeType: 'image/png', buffer: image });
  await alice.waitForFunction((i) => {
    const n = window.weft.graph.getNodeById(i);
    return n.widgets[0].value === 'dot.png' && n.imgs?.[0]?.complete && n.imgs[0].naturalWidth === 1;
  }, id);
  assert.deepEqual(readFileSync(path.join(srv.baseDir, 'input/dot.png')), image);
  assert.deepEqual(await alice.evaluate(() => JSON.parse(window.weft.apiJson())), {
    [id]: { inputs: { image: 'dot.png' }, class_type: 'LoadImage', _meta: { title: 'Load Image' } },
  });
  // Node types can also be dragged from the library onto the canvas (then undone).
  await alice.locator('#node-list .node-item[data-type="LoadImage"]').dragTo(alice.locator('#graph-canvas'), { targetPosition: { x: 150, y: 700 } });
  await alice.waitForFunction(() => window.weft.graph._nodes.length === 2);
  await alice.keyboard.press('Control+z');
  await alice.waitForFunction(() => window.weft.graph._nodes.length === 1);
}));

test('an execution error marks the failing node with the server\'s message', async (t) => withShots(t, pages, async () => {
  // Uploads accept any bytes; LoadImage then fails at run time on a file that is not a PNG.
  const li = await alice.evaluate(() => window.weft.graph._nodes[0].id);
  const chooser = alice.waitForEvent('filechooser');
  await clickWidget(alice, li, 'upload');
  await (await chooser).setFiles({ name: 'broken.png', mimeType: 'image/png', buffer: Buffer.from('not a png') });
  await alice.waitForFunction((i) => window.weft.graph.getNodeById(i).widgets[0].value === 'broken.png', li);
  const box = await alice.locator('#graph-canvas').boundingBox();
  const prev = await addNodeBySearch(alice, box.x + 900, box.y + 200, 'preview image', 'PreviewImage');
  await link(alice, li, 0, prev, 'images');
  await alice.click('#btn-queue');
  const panel = alice.locator('#errors-panel');
  await panel.waitFor();
  assert.match(await panel.textContent(), /LoadImage failed/);
  assert.match(await panel.textContent(), /unsupported image format/);
  assert.equal(await alice.evaluate((i) => window.weft.graph.getNodeById(i).has_errors, li), true);
  await alice.locator('#history-list .h-item.error').waitFor();
  await alice.click('#errors-panel button.icon');
  await panel.waitFor({ state: 'hidden' });
}));

test("a PNG carrying ComfyUI's invert workflow opens by drop and runs unchanged", async (t) => withShots(t, pages, async () => {
  const ui = JSON.parse(workflow('invert.ui.json'));
  await dropFile(alice, 'invert.png', 'image/png', png([tEXt('prompt', '{}'), tEXt('workflow', JSON.stringify(ui))]));
  await alice.waitForFunction(() => document.getElementById('doc-title').textContent.startsWith('invert'));
  assert.deepEqual(await alice.evaluate(() => window.weft.graph._nodes.map((n) => n.type).sort()),
    ui.nodes.map((n) => n.type).sort());
  const expected = { ...JSON.parse(workflow('invert.api.json')), 9: { inputs: { images: ['1', 0] }, class_type: 'PreviewImage', _meta: { title: 'Preview Image' } } };
  assert.deepEqual(await alice.evaluate(() => JSON.parse(window.weft.apiJson())), expected);
  await alice.click('#btn-queue');
  await alice.waitForFunction(() => [3, 9].every((i) => window.weft.graph.getNodeById(i).imgs?.[0]?.naturalWidth === 64), null, { timeout: 30000 });
  // The muted preview got nothing; the saved image is the inverted red (cyan).
  assert.equal(await alice.evaluate(() => window.weft.graph.getNodeById(8).imgs), undefined);
}));

test('an API-format JSON file opens as a graph; export gives both formats back', async (t) => withShots(t, pages, async () => {
  const api = JSON.parse(workflow('txt2img.api.json'));
  await dropFile(alice, 'txt2img.api.json', 'application/json', workflow('txt2img.api.json'));
  await alice.waitForFunction(() => document.getElementById('doc-title').textContent.startsWith('txt2img.api'));
  assert.equal(await count(alice), 7);
  const dl = alice.waitForEvent('download');
  await alice.selectOption('#export-menu', 'api');
  const file = await (await dl).path();
  assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), api);
  const dl2 = alice.waitForEvent('download');
  await alice.selectOption('#export-menu', 'ui');
  const ui = JSON.parse(readFileSync(await (await dl2).path(), 'utf8'));
  assert.equal(ui.nodes.length, 7);
  assert.equal(ui.version, 0.4);
  // The exported editor file opens again (Open file button).
  const chooser = alice.waitForEvent('filechooser');
  await alice.click('#btn-open');
  await (await chooser).setFiles({ name: 'again.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(ui)) });
  await alice.waitForFunction(() => document.getElementById('doc-title').textContent.startsWith('again'));
  assert.deepEqual(await alice.evaluate(() => JSON.parse(window.weft.apiJson())), api);
}));

test("validation errors outline the node and mark the input with the server's message", async (t) => withShots(t, pages, async () => {
  await alice.evaluate(() => {
    const g = window.weft.graph;
    const ks = g._nodes.find((n) => n.type === 'KSampler');
    g.removeLink(ks.inputs.find((i) => i.name === 'model').link);
  });
  await alice.click('#btn-queue');
  const panel = alice.locator('#errors-panel');
  await panel.waitFor();
  assert.match(await panel.textContent(), /#3 KSampler/);
  assert.match(await panel.textContent(), /model/);
  assert.match(await panel.textContent(), /Required input is missing/i);
  const marks = await alice.evaluate(() => {
    const ks = window.weft.graph.getNodeById(3);
    return { has: ks.has_errors, inputs: ks.weftErrors.map((e) => e.extra_info?.input_name) };
  });
  assert.deepEqual(marks, { has: true, inputs: ['model'] });
  // Reconnecting and queueing clears them.
  await link(alice, 4, 0, 3, 'model');
  await setNumber(alice, 5, 'width', 64);
  await setNumber(alice, 5, 'height', 64);
  await setNumber(alice, 3, 'steps', 1);
  await alice.click('#btn-queue');
  await panel.waitFor({ state: 'hidden' });
  assert.equal(await alice.evaluate(() => window.weft.graph.getNodeById(3).has_errors), false);
  await alice.waitForFunction(() => window.weft.graph.getNodeById(9).imgs?.[0]?.naturalWidth === 64, null, { timeout: 60000 });
}));

test('copy/paste, undo/redo, bypass, mute and groups from the keyboard', async (t) => withShots(t, pages, async () => {
  const n0 = await count(alice);
  await clickTitle(alice, 8);
  await alice.keyboard.press('Control+c');
  await alice.mouse.move(1300, 900);
  await alice.keyboard.press('Control+v');
  await alice.waitForFunction((n) => window.weft.graph._nodes.length === n + 1, n0);
  await alice.keyboard.press('Control+z');
  await alice.waitForFunction((n) => window.weft.graph._nodes.length === n, n0);
  await alice.keyboard.press('Control+y');
  await alice.waitForFunction((n) => window.weft.graph._nodes.length === n + 1, n0);
  await alice.keyboard.press('Control+z');
  await alice.waitForFunction((n) => window.weft.graph._nodes.length === n, n0);
  await alice.waitForTimeout(350); // two clicks on one spot within 300 ms make a double click
  await clickTitle(alice, 8);
  await alice.keyboard.press('Control+b');
  assert.equal(await alice.evaluate(() => window.weft.graph.getNodeById(8).mode), 4);
  // Bypassed VAE Decode: its LATENT input does not match its IMAGE output, so Save loses its input.
  assert.equal(await alice.evaluate(() => JSON.parse(window.weft.apiJson())[9].inputs.images), undefined);
  await alice.keyboard.press('Control+m');
  assert.equal(await alice.evaluate(() => window.weft.graph.getNodeById(8).mode), 2);
  await alice.keyboard.press('Control+m');
  assert.equal(await alice.evaluate(() => window.weft.graph.getNodeById(8).mode), 0);
  await alice.keyboard.press('Control+g');
  assert.equal(await alice.evaluate(() => window.weft.graph._groups.length), 1);
  await alice.keyboard.press('Control+z');
  assert.equal(await alice.evaluate(() => window.weft.graph._groups.length), 0);
  await alice.keyboard.press('Control+Shift+z');
  assert.equal(await alice.evaluate(() => window.weft.graph._groups.length), 1);
  assert.deepEqual(jsErrors(alice), []);
}));

test('queue front, cancel a pending prompt, interrupt the running one', async (t) => withShots(t, pages, async () => {
  await setNumber(alice, 3, 'steps', 60);
  await alice.click('#btn-queue');
  await alice.waitForFunction(() => window.weft.execution.runningPrompt);
  const req = alice.waitForRequest((r) => r.url().endsWith('/prompt') && r.method() === 'POST');
  await alice.click('#btn-queue-front');
  assert.equal(JSON.parse((await req).postData()).front, true);
  await alice.click('#side-tabs [data-tab=queue]');
  const pending = alice.locator('#queue-pending .q-item');
  await pending.first().waitFor();
  await pending.first().locator('.q-cancel').click();
  await pending.first().waitFor({ state: 'detached' });
  await alice.click('#btn-interrupt');
  await alice.locator('#history-list .h-item.interrupted').first().waitFor({ timeout: 30000 });
  assert.equal(await alice.locator('#queue-running .q-item').count(), 0);
}));

test('a share link opens the workflow read-only for someone else until revoked', async (t) => withShots(t, pages, async () => {
  await alice.click('#btn-save');
  await alice.locator('.modal input').fill('linked');
  await alice.locator('.modal input').press('Enter');
  await alice.locator('.toast.ok', { hasText: 'Saved linked' }).waitFor();
  await alice.click('#side-tabs [data-tab=library]');
  await alice.click('#library-mine [data-path="workflows/linked.json"] .wf-share');
  await alice.click('#btn-create-link');
  const url = await alice.locator('#share-link-url').inputValue();
  assert.match(url, /\/#\/share\/[A-Za-z0-9_-]{43}$/);
  await alice.locator('#share-links .link-item').waitFor();
  const bob = await page('bob', 'bob');
  await bob.goto(url);
  await bob.waitForFunction(() => document.getElementById('doc-badge')?.textContent.includes('read only'));
  assert.equal(await count(bob), 7);
  // Revoked: the link no longer opens.
  await alice.click('#share-links .link-revoke');
  await alice.locator('#share-links .link-item').waitFor({ state: 'detached' });
  await alice.click('.modal button:text("Close")');
  await bob.goto(`${srv.url}/`);
  await bob.waitForFunction(() => window.weft?.graph);
  await bob.goto(url);
  await bob.locator('.toast.error', { hasText: 'does not exist' }).waitFor();
}));

test('admins manage API keys: create (shown once), list, revoke', async (t) => withShots(t, pages, async () => {
  const admin = await page('admin', 'admin', srv.adminPassword);
  await admin.click('#btn-keys');
  await admin.locator('#keys-table').waitFor();
  await admin.selectOption('#key-user', 'bob');
  await admin.fill('#key-label', 'ci');
  await admin.click('#key-create');
  const key = await admin.locator('#key-secret').inputValue();
  assert.match(key, /^weft_[A-Za-z0-9]+_[A-Za-z0-9_-]+$/);
  const me = await fetch(`${srv.url}/auth/me`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal((await me.json()).user, 'bob');
  const id = key.split('_')[1];
  const row = admin.locator(`#keys-rows tr[data-id="${id}"]`);
  assert.match(await row.textContent(), /bob.*ci/);
  // The secret is not shown again in the list.
  assert.ok(!(await admin.locator('#keys-table').textContent()).includes(key.split('_')[2]));
  await row.locator('.key-revoke').click();
  await admin.click('.modal button.danger');
  await admin.locator(`#keys-rows tr.revoked[data-id="${id}"]`).waitFor();
  assert.equal((await fetch(`${srv.url}/auth/me`, { headers: { authorization: `Bearer ${key}` } })).status, 401);
  await admin.click('#btn-back');
  await admin.locator('#graph-canvas').waitFor();
}));

test('each role sees only what it may do', async (t) => withShots(t, pages, async () => {
  const vera = await page('vera', 'vera');
  for (const sel of ['#btn-queue', '#btn-save', '#btn-save-as', '#btn-keys', '#btn-interrupt']) {
    assert.equal(await vera.locator(sel).count() - (await vera.locator(`${sel}[hidden]`).count()), 0, sel);
  }
  assert.match(await vera.textContent('#topbar'), /view only/);
  // Keys page is not offered to a non-admin even by address.
  await vera.goto(`${srv.url}/#/keys`);
  await vera.locator('#graph-canvas').waitFor();
  assert.equal(await vera.locator('#keys-table').count(), 0);
  assert.equal(await alice.locator('#btn-keys').count(), 0);
  assert.equal(await alice.locator('.wf-share').count() > 0, true);
}));

test('logging out ends the session', async (t) => withShots(t, pages, async () => {
  await alice.click('#btn-logout');
  await alice.locator('#login-form').waitFor();
  assert.match(await alice.textContent('#login-error'), /signed out/);
  assert.equal(await alice.evaluate(async () => (await fetch('/auth/me')).status), 401);
  for (const p of open) assert.deepEqual(jsErrors(p), [], p.weftName);
}));
