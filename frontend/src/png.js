// PNG text chunks (tEXt, zTXt, iTXt) → {keyword: text}. ComfyUI and weft store the API prompt
// under "prompt" and the editor graph under "workflow". Works on bytes in the browser and in
// Node; compressed chunks go through DecompressionStream. Reading stops at IEND, a truncated
// chunk, or a CRC that does not match (later chunks of a damaged file are not trusted).

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

let crcTable = null;
function crc32(bytes, start, end) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function isPng(bytes) {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);
}

const utf8 = new TextDecoder('utf-8');
const latin1 = new TextDecoder('latin1');

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** [{type, data}] of the chunks before IEND whose CRC checks out. */
export function pngChunks(bytes) {
  if (!isPng(bytes)) throw new Error('not a PNG file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks = [];
  let p = 8;
  while (p + 12 <= bytes.length) {
    const len = view.getUint32(p);
    const end = p + 12 + len;
    if (end > bytes.length) break;
    const type = latin1.decode(bytes.subarray(p + 4, p + 8));
    if (crc32(bytes, p + 4, p + 8 + len) !== view.getUint32(p + 8 + len)) break;
    if (type === 'IEND') break;
    chunks.push({ type, data: bytes.subarray(p + 8, p + 8 + len) });
    p = end;
  }
  return chunks;
}

/** {keyword: text} of every text chunk (the first of a repeated keyword wins). Text is read
 * as UTF-8: ComfyUI writes UTF-8 JSON even into tEXt. */
export async function pngText(bytes) {
  const out = {};
  for (const { type, data } of pngChunks(bytes)) {
    if (type !== 'tEXt' && type !== 'zTXt' && type !== 'iTXt') continue;
    const z = data.indexOf(0);
    if (z <= 0) continue;
    const key = latin1.decode(data.subarray(0, z));
    let text;
    try {
      if (type === 'tEXt') {
        text = utf8.decode(data.subarray(z + 1));
      } else if (type === 'zTXt') {
        text = utf8.decode(await inflate(data.subarray(z + 2)));
      } else {
        const compressed = data[z + 1] === 1;
        let q = z + 3;
        const langEnd = data.indexOf(0, q);
        if (langEnd < 0) continue;
        const transEnd = data.indexOf(0, langEnd + 1);
        if (transEnd < 0) continue;
        q = transEnd + 1;
        const body = data.subarray(q);
        text = utf8.decode(compressed ? await inflate(body) : body);
      }
    } catch {
      continue;
    }
    if (!(key in out)) out[key] = text;
  }
  return out;
}
