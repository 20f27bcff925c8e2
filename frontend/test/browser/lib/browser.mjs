// Debian's Chromium driven by playwright-core (no browser download): one browser per test
// file, a context per user, console errors collected, and a screenshot of every open page
// saved to frontend/test-screenshots/ when a test fails.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { FRONTEND } from './server.mjs';

export const SHOTS = path.join(FRONTEND, 'test-screenshots');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** A fresh context + page at 1920x1080 that records console errors and page errors. */
export async function newPage(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const page = await context.newPage();
  page.weftName = name;
  page.errors = [];
  page.logs = [];
  page.on('console', (m) => {
    page.logs.push(`${m.type()}: ${m.text()}`);
    if (m.type() === 'error') page.errors.push(m.text());
  });
  page.on('pageerror', (e) => page.errors.push(String(e.stack || e)));
  return page;
}

/** Saves a screenshot of each page; called from a failing test. */
export async function screenshots(pages, testName) {
  mkdirSync(SHOTS, { recursive: true });
  const safe = testName.replace(/[^a-z0-9]+/gi, '-').slice(0, 80);
  const files = [];
  for (const p of pages) {
    if (!p || p.isClosed()) continue;
    const f = path.join(SHOTS, `${safe}-${p.weftName || 'page'}.png`);
    try { await p.screenshot({ path: f, fullPage: true }); files.push(f); } catch { /* page gone */ }
  }
  return files;
}

/** Runs fn; on failure saves screenshots of `pages()` and rethrows with their paths
 * (WEFT_BROWSER_SHOTS=1 saves them after passing tests too, to look at the pages). */
export async function withShots(t, pages, fn) {
  try {
    await fn();
    if (process.env.WEFT_BROWSER_SHOTS) await screenshots(pages(), t.name);
  } catch (e) {
    const files = await screenshots(pages(), t.name);
    e.message += files.length ? `\nscreenshots: ${files.join(', ')}` : '';
    for (const p of pages()) if (p?.logs?.length) e.message += `\nconsole of ${p.weftName}:\n  ${p.logs.slice(-15).join('\n  ')}`;
    throw e;
  }
}
