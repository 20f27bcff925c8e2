// `npm run build`: bundles src/main.js (and the CSS it imports) with esbuild into dist/main.js
// and dist/main.css, and copies index.html; `weft serve` serves dist/ at /. Prints sizes and
// the time taken.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, 'dist');
const t0 = performance.now();
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { main: path.join(here, 'src/main.js') },
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  outdir: out,
  loader: { '.svg': 'dataurl', '.png': 'dataurl' },
  legalComments: 'linked',
  logLevel: 'warning',
});
copyFileSync(path.join(here, 'index.html'), path.join(out, 'index.html'));
const ms = performance.now() - t0;
const size = (f) => {
  const p = path.join(out, f);
  const raw = statSync(p).size;
  const gz = zlib.gzipSync(readFileSync(p)).length;
  return `${f} ${(raw / 1024).toFixed(1)} KB (gzip ${(gz / 1024).toFixed(1)} KB)`;
};
console.log(`frontend: built dist/ in ${ms.toFixed(0)} ms: ${size('main.js')}, ${size('main.css')}`);
