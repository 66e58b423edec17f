/**
 * HPACK's Huffman code (RFC 7541 Appendix B), decoding only: kedge sends its own strings raw.
 * The code is canonical, so one length per symbol (0–255, then EOS; one base-36 digit each)
 * defines it. Decoding runs a 4-bit state machine built from those lengths at load: two table
 * lookups per input byte instead of a walk per bit.
 */
const codeLengths =
  "dnsssssssoussussssssssusssssssss6aacd68baa8b8666555666666678f6cad67777777777777777777777878djde6f56565666577666567655677777fbedskmkkmmmnmnnnnnonoomnonnnnlmnmnnomlkmmnnlnmmolmnnllmlnmnnkmmmnmmnqqkjmnmpqqqrrqopjlqrrqrollqqsrrrkoklmllnmmppooqnqrqqrrrrrsrrrrrqu";
const EOS = 256;

/** The canonical codes: symbols ordered by (length, symbol) take consecutive values per length. */
export function huffmanCodes(): { code: number; bits: number }[] {
  const bits = [...codeLengths].map((c) => parseInt(c, 36));
  const order = bits.map((_, s) => s).sort((a, b) => bits[a] - bits[b] || a - b);
  const codes: { code: number; bits: number }[] = [];
  let code = 0;
  let prev = bits[order[0]];
  for (const s of order) {
    code *= 2 ** (bits[s] - prev); // past 2^31: keep to plain arithmetic, not bit shifts
    prev = bits[s];
    codes[s] = { code, bits: bits[s] };
    code++;
  }
  return codes;
}

const EMIT = 1 << 8;
const FAIL = 1 << 9;

interface Machine {
  /** Per (node, nibble): next node (bits 0–7), "emits a symbol" (bit 8), "invalid" (bit 9), symbol << 10. */
  readonly transitions: Int32Array;
  /** Nodes where the input may end: padding is at most 7 one-bits, a prefix of EOS (RFC 7541 §5.2). */
  readonly accepting: Uint8Array;
}

/**
 * Built by the first Huffman-coded string, not at load: a process that never reads one (no HTTP/2
 * peer, or a worker at idle) does not run the build, which pages in interpreter code and keeps
 * ~1 MB resident for nothing.
 */
let built: Machine | undefined;

function build(): Machine {
  // Trie of the code: internal nodes 0..255 (0 is the root); a child below 0 is the leaf -(symbol+1).
  const child = new Int32Array(512);
  const machine = new Int32Array(256 * 16);
  const accepting = new Uint8Array(256);
  let nodes = 1;
  const codes = huffmanCodes();
  for (let sym = 0; sym <= EOS; sym++) {
    const { code, bits } = codes[sym];
    let node = 0;
    for (let i = bits - 1; i >= 0; i--) {
      const bit = Math.floor(code / 2 ** i) & 1;
      const slot = node * 2 + bit;
      if (i === 0) child[slot] = -(sym + 1);
      else {
        if (child[slot] === 0) child[slot] = nodes++;
        node = child[slot];
      }
    }
  }
  for (let node = 0, depth = 0; depth <= 7 && node >= 0; depth++) {
    accepting[node] = 1;
    node = child[node * 2 + 1];
  }
  for (let node = 0; node < 256; node++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let at = node;
      let out = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[at * 2 + ((nibble >> i) & 1)];
        if (next >= 0) {
          at = next;
          continue;
        }
        const sym = -next - 1;
        if (sym === EOS) out |= FAIL; // EOS inside a string is an error (RFC 7541 §5.2)
        else out |= EMIT | (sym << 10); // at most one per nibble: every code is 5+ bits long
        at = 0;
      }
      machine[node * 16 + nibble] = out | at;
    }
  }
  return { transitions: machine, accepting };
}

let scratch = Buffer.allocUnsafe(256);

/** Where huffmanDecode writes: valid until its next call. */
export function huffmanOutput(): Buffer {
  return scratch;
}

/** Decodes src[start, end) into huffmanOutput(); its length, or -1 when the input is not a valid Huffman string. */
export function huffmanDecode(src: Uint8Array, start: number, end: number): number {
  // Every symbol is at least 5 bits, so the output is at most 8/5 of the input.
  const most = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < most) scratch = Buffer.allocUnsafe(most * 2);
  const out = scratch;
  const { transitions: machine, accepting } = (built ??= build());
  let n = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i];
    let t = machine[state * 16 + (byte >> 4)];
    if (t & FAIL) return -1;
    if (t & EMIT) out[n++] = t >> 10;
    state = t & 0xff;
    t = machine[state * 16 + (byte & 15)];
    if (t & FAIL) return -1;
    if (t & EMIT) out[n++] = t >> 10;
    state = t & 0xff;
  }
  return accepting[state] ? n : -1;
}
