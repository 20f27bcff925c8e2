// Time from exec of `weft serve` to its first answered request: a free port is chosen first, the
// server is spawned on it with a fresh base dir, and GET /health is retried in a tight loop.
// Also reads the idle RSS (VmRSS) once it answers.
//   node bench/startup.mjs path/to/weft [RUNS]
// Prints key=value lines: ready_ms (median), ready_min_ms, rss_kb (median).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const bin = process.argv[2];
const runs = Number(process.argv[3] || 5);
if (!bin) {
  console.error('usage: node bench/startup.mjs path/to/weft [RUNS]');
  process.exit(2);
}

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

// One GET /health on a fresh connection: resolves the status, or 0 when refused.
const probe = (port) => new Promise((resolve) => {
  const s = net.connect({ port, host: '127.0.0.1' });
  let d = '';
  s.on('connect', () => s.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
  s.on('data', (c) => { d += c; });
  s.on('error', () => resolve(0));
  s.on('close', () => resolve(Number((d.match(/^HTTP\/1\.1 (\d+)/) || [0, 0])[1])));
});

const sleep = (n) => new Promise((r) => setTimeout(r, n));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const ready = [];
const rss = [];
for (let i = 0; i < runs; i++) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weft-bench-start-'));
  const port = await freePort();
  const t0 = performance.now();
  const p = spawn(bin, ['serve', '--port', String(port), '--base-dir', path.join(dir, 'base'), '--quiet'], { stdio: 'ignore' });
  let status = 0;
  while (status !== 200) {
    if (performance.now() - t0 > 10000) {
      p.kill('SIGKILL');
      throw new Error('weft serve did not answer within 10 s');
    }
    status = await probe(port);
  }
  ready.push(performance.now() - t0);
  await sleep(300);
  const m = readFileSync(`/proc/${p.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  rss.push(Number(m[1]));
  p.kill('SIGTERM');
  await new Promise((r) => p.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
console.log(`ready_ms=${median(ready).toFixed(1)}`);
console.log(`ready_min_ms=${Math.min(...ready).toFixed(1)}`);
console.log(`rss_kb=${median(rss)}`);
