// Copyright 2026 the @corothread/evthread authors. MIT license.
// SHA-1 (FIPS 180-4), synchronous, for one purpose: the WebSocket handshake's
// Sec-WebSocket-Accept (RFC 6455 4.2.2), which `upgradeWebSocket()` must
// compute before it returns, where `crypto.subtle.digest` would need an
// await. Written from the standard; not for anything that needs a secure
// hash (SHA-1 is not one).

const W = new Uint32Array(80);

function rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n));
}

/** The SHA-1 digest of `data`: 20 bytes. */
export function sha1(data: Uint8Array): Uint8Array<ArrayBuffer> {
  // Padding: a 1 bit, zeros, then the length in bits as 64 bits, big-endian,
  // to a multiple of 64 bytes.
  const n = data.byteLength;
  const padded = new Uint8Array(((n + 8) >> 6) * 64 + 64);
  padded.set(data);
  padded[n] = 0x80;
  const view = new DataView(padded.buffer);
  const bits = n * 8;
  view.setUint32(padded.byteLength - 8, Math.floor(bits / 2 ** 32));
  view.setUint32(padded.byteLength - 4, bits >>> 0);

  let h0 = 0x67452301;
  let h1 = 0xefcdab89;
  let h2 = 0x98badcfe;
  let h3 = 0x10325476;
  let h4 = 0xc3d2e1f0;
  for (let block = 0; block < padded.byteLength; block += 64) {
    for (let t = 0; t < 16; t++) W[t] = view.getUint32(block + t * 4);
    for (let t = 16; t < 80; t++) {
      W[t] = rotl(W[t - 3]! ^ W[t - 8]! ^ W[t - 14]! ^ W[t - 16]!, 1);
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4;
    for (let t = 0; t < 80; t++) {
      let f: number, k: number;
      if (t < 20) {
        f = (b & c) | (~b & d);
        k = 0x5a827999;
      } else if (t < 40) {
        f = b ^ c ^ d;
        k = 0x6ed9eba1;
      } else if (t < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8f1bbcdc;
      } else {
        f = b ^ c ^ d;
        k = 0xca62c1d6;
      }
      const temp = (rotl(a, 5) + f + e + k + W[t]!) >>> 0;
      e = d;
      d = c;
      c = rotl(b, 30) >>> 0;
      b = a;
      a = temp;
    }
    h0 = (h0 + a) >>> 0;
    h1 = (h1 + b) >>> 0;
    h2 = (h2 + c) >>> 0;
    h3 = (h3 + d) >>> 0;
    h4 = (h4 + e) >>> 0;
  }
  const out = new Uint8Array(20);
  const outView = new DataView(out.buffer);
  outView.setUint32(0, h0);
  outView.setUint32(4, h1);
  outView.setUint32(8, h2);
  outView.setUint32(12, h3);
  outView.setUint32(16, h4);
  return out;
}
