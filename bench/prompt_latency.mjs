// POST /prompt -> execution_success latency of a running `weft serve`, over prompts that are
// fully cached (the invert workflow, and a 500-node chain), one at a time: each prompt's
// completion (executing null) is awaited on a WebSocket before the next is sent.
//   node bench/prompt_latency.mjs http://127.0.0.1:PORT [N]
// Prints shell-friendly key=value lines (times in ms). Uses tests/e2e's node_modules (ws).
import http from 'node:http';
import { invertPrompt, chainPrompt } from '../tests/e2e/helpers.mjs';
import WebSocket from '../tests/e2e/node_modules/ws/wrapper.mjs';

const base = process.argv[2];
const N = Number(process.argv[3] || 1000);
if (!base) {
  console.error('usage: node bench/prompt_latency.mjs http://HOST:PORT [N]');
  process.exit(2);
}
const url = new URL(base);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const clientId = 'bench-' + process.pid;

function postPrompt(prompt) {
  const body = JSON.stringify({ prompt, client_id: clientId });
  return new Promise((resolve, reject) => {
    const r = http.request({
      host: url.hostname, port: url.port, path: '/prompt', method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let d = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { d += c; });
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(d)) : reject(new Error(`POST /prompt ${res.statusCode}: ${d}`))));
    });
    r.on('error', reject);
    r.setTimeout(30000, () => r.destroy(new Error('POST /prompt timed out')));
    r.end(body);
  });
}

// Events may arrive before POST /prompt answers: record them by prompt id.
const success = new Map(); // prompt_id -> time of execution_success
const failed = new Map();
const done = new Map();    // prompt_id -> resolve of a waiter, or true once finished
const ws = new WebSocket(`ws://${url.host}/ws?clientId=${clientId}`);
ws.on('message', (d, bin) => {
  if (bin) return;
  const t = performance.now();
  const m = JSON.parse(d.toString());
  const id = m.data && m.data.prompt_id;
  if (!id) return;
  if (m.type === 'execution_success') success.set(id, t);
  else if (m.type === 'execution_error' || m.type === 'execution_interrupted') failed.set(id, m);
  else if (m.type === 'executing' && m.data.node === null) {
    const w = done.get(id);
    done.set(id, true);
    if (typeof w === 'function') w();
  }
});
await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });

async function runOnce(prompt) {
  const t0 = performance.now();
  const { prompt_id: id } = await postPrompt(prompt);
  if (done.get(id) !== true) {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`prompt ${id} did not finish in 120 s`)), 120000);
      done.set(id, () => { clearTimeout(timer); resolve(); });
    });
  }
  done.delete(id);
  if (failed.has(id)) throw new Error(`prompt ${id} failed: ${JSON.stringify(failed.get(id))}`);
  const t = success.get(id);
  success.delete(id);
  if (t === undefined) throw new Error(`no execution_success for ${id}`);
  return t - t0;
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const f3 = (x) => x.toFixed(3);

async function series(name, prompt, n) {
  const first = await runOnce(prompt); // uncached (or warm-up)
  for (let i = 0; i < Math.min(20, n); i++) await runOnce(prompt); // warm the JIT and the connection
  const xs = [];
  for (let i = 0; i < n; i++) xs.push(await runOnce(prompt));
  console.log(`${name}_first_ms=${f3(first)}`);
  console.log(`${name}_p50_ms=${f3(pct(xs, 50))}`);
  console.log(`${name}_p99_ms=${f3(pct(xs, 99))}`);
  console.log(`${name}_n=${n}`);
}

try {
  await series('invert', invertPrompt({ prefix: 'bench_invert' }), N);
  await series('chain500', chainPrompt(500), N);
} finally {
  ws.terminate();
  agent.destroy();
}
