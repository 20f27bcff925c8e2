// The real `weft serve` for the browser tests: a fresh base dir with the tiny demo checkpoint,
// authentication on (the bootstrap admin's password and key are read from its first lines),
// users made with `weft users add`, and the built editor (frontend/dist) served at /. Every
// wait is bounded; the process is killed when the test process exits.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const FRONTEND = path.resolve(here, '../../..');
export const REPO = path.resolve(FRONTEND, '..');
export const WEFT_BIN = process.env.WEFT_BIN ? path.resolve(process.env.WEFT_BIN) : path.join(REPO, 'build-asan/weft');
export const DIST = path.join(FRONTEND, 'dist');

const live = new Set();
process.on('exit', () => { for (const p of live) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

/** Runs `weft ARGS` to completion; resolves {code, stdout, stderr}. */
export function runWeft(args, { stdin, timeoutMs = 60000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(WEFT_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(p);
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`weft ${args.join(' ')} timed out\n${err}`)); }, timeoutMs);
    p.on('error', (e) => { clearTimeout(t); reject(e); });
    p.on('exit', (code) => { clearTimeout(t); live.delete(p); resolve({ code, stdout: out, stderr: err }); });
    p.stdin.on('error', () => {});
    p.stdin.end(stdin ?? '');
  });
}

/** Starts the server; resolves {url, baseDir, adminPassword, adminKey, addUser, stop, log}. */
export async function startWeft({ timeoutMs = 30000 } = {}) {
  if (!existsSync(WEFT_BIN)) throw new Error(`weft binary not found at ${WEFT_BIN} (build it or set WEFT_BIN)`);
  if (!existsSync(path.join(DIST, 'index.html'))) throw new Error('frontend/dist is missing: run `npm run build` first');
  const root = mkdtempSync(path.join(os.tmpdir(), 'weft-browser-'));
  const baseDir = path.join(root, 'base');
  const demo = await runWeft(['demo-model', '--base-dir', baseDir]);
  if (demo.code !== 0) throw new Error(`weft demo-model failed: ${demo.stderr}`);
  const proc = spawn(WEFT_BIN, ['serve', '--listen', '127.0.0.1', '--port', '0', '--base-dir', baseDir, '--frontend', DIST],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; if (process.env.WEFT_BROWSER_VERBOSE) process.stderr.write(d); });
  const exited = new Promise((r) => proc.on('exit', (code, signal) => { live.delete(proc); r({ code, signal }); }));
  const url = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`weft serve did not start in ${timeoutMs} ms\n${out}\n${err}`)), timeoutMs);
    const check = () => {
      const m = out.match(/weft: listening on (http:\/\/[^\s]+)/);
      if (m && /admin password[^:]*: (\S+)/.test(out)) { clearTimeout(t); resolve(m[1]); }
    };
    proc.stdout.on('data', check);
    exited.then(({ code }) => { clearTimeout(t); reject(new Error(`weft serve exited (${code})\n${out}\n${err}`)); });
  });
  const adminPassword = out.match(/admin password[^:]*: (\S+)/)[1];
  const keyFile = path.join(baseDir, 'admin.key');
  const adminKey = existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : null;
  return {
    url,
    baseDir,
    adminPassword,
    adminKey,
    log: () => out + err,
    async addUser(name, role, password) {
      const r = await runWeft(['users', 'add', name, '--role', role, '--password-stdin', '--base-dir', baseDir], { stdin: `${password}\n` });
      if (r.code !== 0) throw new Error(`weft users add ${name}: ${r.stderr}${r.stdout}`);
    },
    /** GET/POST with the admin key (for checks behind the UI's back). */
    async fetch(p, opts = {}) {
      const res = await fetch(url + p, { ...opts, headers: { authorization: `Bearer ${adminKey}`, ...(opts.headers || {}) } });
      const text = await res.text();
      let json;
      try { json = JSON.parse(text); } catch { json = undefined; }
      return { status: res.status, text, json };
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        let timer;
        const r = await Promise.race([exited, new Promise((res) => { timer = setTimeout(() => res(null), 15000); })]);
        clearTimeout(timer);
        if (!r) { proc.kill('SIGKILL'); await exited; }
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}
