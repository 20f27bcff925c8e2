// Page-level helpers for driving the editor with real mouse and keyboard input. Positions of
// nodes, sockets and widgets are read from the page (window.weft, the editor) and turned into
// page coordinates; every action itself is a real click, drag or key press.

export async function login(page, url, user, password) {
  await page.goto(`${url}/`);
  await page.waitForSelector('#login-form');
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
  await page.waitForSelector('#graph-canvas');
  await page.waitForFunction(() => window.weft?.graph && document.querySelector('#node-list .node-cat'));
}

/** Clicks New (empty graph), discarding unsaved changes when asked. */
export async function newWorkflow(page) {
  await page.click('#btn-new');
  const discard = page.locator('.modal button.danger');
  if (await discard.count()) await discard.click();
  await page.waitForFunction(() => window.weft.graph._nodes.length === 0);
}

export const nodeIds = (page) => page.evaluate(() => window.weft.graph._nodes.map((n) => n.id));

/** Double-clicks empty canvas at page (x, y), searches, presses Enter; resolves the new node id. */
export async function addNodeBySearch(page, x, y, query, expectType) {
  const before = new Set(await nodeIds(page));
  await page.mouse.dblclick(x, y);
  const input = page.locator('.litesearchbox input');
  await input.waitFor();
  await page.keyboard.type(query, { delay: 10 });
  await page.waitForFunction((t) => document.querySelector('.litesearchbox .lite-search-item')?.dataset.type === escape(t), expectType);
  await page.keyboard.press('Enter');
  await page.waitForFunction((n) => window.weft.graph._nodes.length === n, before.size + 1);
  const after = await nodeIds(page);
  const id = after.find((i) => !before.has(i));
  const type = await page.evaluate((i) => window.weft.graph.getNodeById(i).type, id);
  if (type !== expectType) throw new Error(`search "${query}" added ${type}, expected ${expectType}`);
  return id;
}

/** Page coordinates of a socket: kind "in" (by input name or widget name) or "out" (index). */
export function socketPos(page, id, kind, which) {
  return page.evaluate(({ id, kind, which }) => {
    const e = window.weft;
    const n = e.graph.getNodeById(id);
    const i = kind === 'in' ? n.inputs.findIndex((s) => (s.widget?.name ?? s.name) === which) : which;
    if (i < 0) throw new Error(`no input ${which} on ${n.type}`);
    return e.canvas.toPage(kind === 'in' ? n.getInputPos(i) : n.getOutputPos(i));
  }, { id, kind, which });
}

/** Drags from output `slot` of node `from` to input `input` of node `to`, with the mouse. */
export async function link(page, from, slot, to, input) {
  const [x0, y0] = await socketPos(page, from, 'out', slot);
  const [x1, y1] = await socketPos(page, to, 'in', input);
  await page.mouse.move(x0, y0);
  await page.mouse.down();
  await page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, { steps: 5 });
  await page.mouse.move(x1, y1, { steps: 5 });
  await page.mouse.up();
  const ok = await page.evaluate(({ to, input }) => {
    const n = window.weft.graph.getNodeById(to);
    return n.inputs.find((s) => (s.widget?.name ?? s.name) === input).link != null;
  }, { to, input });
  if (!ok) throw new Error(`dragging ${from}:${slot} to ${to}.${input} made no link`);
}

/** Page coordinates of the middle of a widget's row. */
export function widgetPos(page, id, name) {
  return page.evaluate(({ id, name }) => {
    const e = window.weft;
    const n = e.graph.getNodeById(id);
    const w = n.widgets.find((x) => x.name === name);
    return e.canvas.toPage([n.pos[0] + n.size[0] / 2, n.pos[1] + w.y + 10]);
  }, { id, name });
}

/** Clicks a number widget's value, types a new one into litegraph's prompt, presses Enter. */
export async function setNumber(page, id, name, value) {
  const [x, y] = await widgetPos(page, id, name);
  await page.mouse.click(x, y);
  const input = page.locator('.graphdialog input');
  await input.waitFor();
  await input.fill(String(value));
  await input.press('Enter');
  await page.waitForFunction(({ id, name, value }) => window.weft.graph.getNodeById(id).widgets.find((w) => w.name === name).value === value, { id, name, value });
}

/** Types into a multiline widget's text box (a real <textarea> over the canvas). */
export async function typeText(page, id, name, text) {
  const box = page.locator(`textarea.dom-text[data-node="${id}"][data-widget="${name}"]`);
  await box.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.type(text, { delay: 2 });
  await page.waitForFunction(({ id, name, text }) => window.weft.graph.getNodeById(id).widgets.find((w) => w.name === name).value === text, { id, name, text });
}

/** Clicks a widget of a node (a button, a toggle, a combo arrow...). Waits out litegraph's
 * double-click window first, so that two quick clicks on one spot are two clicks. */
export async function clickWidget(page, id, name) {
  await page.waitForFunction(({ id, name }) => window.weft.graph.getNodeById(id).widgets.find((w) => w.name === name).y > 0, { id, name });
  const [x, y] = await widgetPos(page, id, name);
  await page.waitForTimeout(350);
  await page.mouse.click(x, y);
}

/** Clicks a node's title bar (selects it). */
export async function clickTitle(page, id, { modifiers } = {}) {
  const [x, y] = await page.evaluate((id) => {
    const e = window.weft;
    const n = e.graph.getNodeById(id);
    return e.canvas.toPage([n.pos[0] + 60, n.pos[1] - 15]);
  }, id);
  await page.mouse.click(x, y, { modifiers });
}

/** Console errors other than failed resource loads (401 before login, 404 of an empty library). */
export function jsErrors(page) {
  return page.errors.filter((m) => !/^Failed to load resource/.test(m));
}
