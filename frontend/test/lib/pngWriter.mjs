// Builds small PNG files in tests: a 1x1 image plus any text chunks (tEXt, zTXt, iTXt), with
// correct CRCs unless a test breaks one on purpose.
import zlib from 'node:zlib';

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

export function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'latin1'), data])), 0);
  return Buffer.concat([head, data, crc]);
}

export const tEXt = (k, v) => chunk('tEXt', Buffer.concat([Buffer.from(k, 'latin1'), Buffer.from([0]), Buffer.from(v, 'utf8')]));
export const zTXt = (k, v) => chunk('zTXt', Buffer.concat([Buffer.from(k, 'latin1'), Buffer.from([0, 0]), zlib.deflateSync(Buffer.from(v, 'utf8'))]));
export function iTXt(k, v, compress = false) {
  const body = compress ? zlib.deflateSync(Buffer.from(v, 'utf8')) : Buffer.from(v, 'utf8');
  return chunk('iTXt', Buffer.concat([Buffer.from(k, 'latin1'), Buffer.from([0, compress ? 1 : 0, 0]), Buffer.from('en\0', 'latin1'), Buffer.from('\0'), body]));
}

/** A valid 1x1 grey PNG with `extra` chunks (Buffers) between IHDR and IDAT. */
export function png(extra = []) {
  const sig = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0);
  ihdr.writeUInt32BE(1, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const idat = zlib.deflateSync(Buffer.from([0, 128]));
  return Buffer.concat([sig, chunk('IHDR', ihdr), ...extra, chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}
