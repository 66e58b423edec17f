import { nameIs } from "../net/fields.js";
import { huffmanDecode, huffmanOutput } from "./huffman.js";
import { copyOf } from "../net/bytes.js";
import { RecentBlocks } from "./recent-blocks.js";

/** Header fields as node:http2 hands them out: a repeated name collects its values in order. */
export type H2Headers = Record<string, string | string[]>;
export type OutgoingFields = Record<string, string | number | readonly string[] | undefined>;

export class HpackError extends Error {
  override name = "HpackError";
}

/** RFC 7541 Appendix A. */
const staticTable: readonly (readonly [string, string])[] = [
  ["", ""], // index 0 is not a field
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""], ["date", ""], ["etag", ""],
  ["expect", ""], ["expires", ""], ["from", ""], ["host", ""], ["if-match", ""], ["if-modified-since", ""],
  ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""], ["last-modified", ""], ["link", ""],
  ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""], ["proxy-authorization", ""], ["range", ""],
  ["referer", ""], ["refresh", ""], ["retry-after", ""], ["server", ""], ["set-cookie", ""],
  ["strict-transport-security", ""], ["transfer-encoding", ""], ["user-agent", ""], ["vary", ""], ["via", ""],
  ["www-authenticate", ""],
];
const staticCount = staticTable.length - 1;
/** Per RFC 7541 §4.1: an entry's size counts its name and value octets plus 32. */
const entryOverhead = 32;

// A literal's name must be a lowercase token (or a pseudo-header); values must not carry NUL, CR or LF (RFC 9113 §8.2).
const fieldName = /^:?[a-z0-9!#$%&'*+.^_`|~-]+$/;
const badValue = /[\0\r\n]/;

/**
 * Decoded literals by their encoded octets (Huffman-coded or not), checked once: a backend sends
 * the same few names and values (content-type, grpc-status, "0") on every response, and a string
 * made once is cheaper to reuse than to slice, check and hash again. Shared by every connection;
 * a slot holds the latest literal that hashed to it.
 */
class LiteralCache {
  private static readonly slots = 512;
  private static readonly maxOctets = 64;
  private readonly octets: (Uint8Array | undefined)[] = new Array(LiteralCache.slots).fill(undefined);
  private readonly texts: string[] = new Array(LiteralCache.slots).fill("");
  /** Whether the slot's octets were Huffman-coded: the same octets read raw are another string. */
  private readonly coded: boolean[] = new Array(LiteralCache.slots).fill(false);

  constructor(readonly check: (text: string) => void) {}

  /**
   * The slot of a literal: its length and four of its octets (first, last, two inside), not all of
   * them: hashing every octet of every literal a peer sends cost as much as the compare that must
   * follow anyway (~2% of a gRPC call in a profile). Literals alike in those share a slot, and the
   * latest wins it.
   */
  private slot(block: Uint8Array, start: number, end: number, huffman: boolean): number {
    const n = end - start;
    let h = huffman ? n : -n;
    if (n > 0) {
      h = (Math.imul(h, 31) + block[start]) | 0;
      h = (Math.imul(h, 31) + block[end - 1]) | 0;
      h = (Math.imul(h, 31) + block[start + (n >> 1)]) | 0;
      h = (Math.imul(h, 31) + block[start + (n >> 2)]) | 0;
    }
    return (h ^ (h >>> 11)) & (LiteralCache.slots - 1);
  }

  find(block: Uint8Array, start: number, end: number, huffman: boolean): string | undefined {
    if (end - start > LiteralCache.maxOctets) return undefined;
    const slot = this.slot(block, start, end, huffman);
    const octets = this.octets[slot];
    if (octets === undefined || octets.length !== end - start || this.coded[slot] !== huffman) return undefined;
    for (let i = 0; i < octets.length; i++) if (octets[i] !== block[start + i]) return undefined;
    return this.texts[slot];
  }

  add(block: Uint8Array, start: number, end: number, huffman: boolean, text: string): void {
    if (end - start > LiteralCache.maxOctets) return;
    const slot = this.slot(block, start, end, huffman);
    this.octets[slot] = copyOf(block, start, end);
    this.texts[slot] = text;
    this.coded[slot] = huffman;
  }
}

const names = new LiteralCache((name) => {
  if (!fieldName.test(name)) throw new HpackError(`bad field name ${JSON.stringify(name)}`);
});
const values = new LiteralCache((value) => {
  if (badValue.test(value)) throw new HpackError("field value with NUL, CR or LF");
});

/**
 * One connection's HPACK decoding context (RFC 7541): the static table, the dynamic table the
 * peer fills, and a bound on the decoded list so a hostile peer cannot make kedge buffer without
 * limit. Decoding errors are connection errors (COMPRESSION_ERROR): the context is unusable after one.
 */
export class HpackDecoder {
  /** Newest entry last. */
  private readonly table: [string, string][] = [];
  private tableSize = 0;
  private capacity: number;

  constructor(
    /** The SETTINGS_HEADER_TABLE_SIZE kedge advertised: the most a size update may ask for. */
    private readonly maxCapacity = 4096,
    private readonly maxListSize = 64 * 1024,
  ) {
    this.capacity = maxCapacity;
  }

  // The block being decoded and the read position in it: fields, not closures, on the hot path.
  private block: Buffer = Buffer.alloc(0);
  private pos = 0;
  private end = 0;

  /** Changes each time the dynamic table does (an insert, a size update): a kept block's fields hold while it stands still. */
  private tableVersion = 0;
  private readonly recent = new RecentBlocks<H2Headers>();

  /**
   * Decodes block[start, end): one whole header block. The fields are frozen: a block seen again
   * gives the same object (RecentBlocks), so whoever must change them works on a copy.
   */
  decode(block: Uint8Array, start = 0, end = block.length): H2Headers {
    const version = this.tableVersion;
    const known = this.recent.find(block, start, end, version);
    if (known !== undefined) {
      this.listSize = known.listSize;
      this.fieldCount = known.fieldCount;
      this.pseudoAfterRegular = known.pseudoAfterRegular;
      return known.fields;
    }
    const fields = frozen(this.decodeFields(block, start, end));
    // A block that changed the table is never found again (the version moved on): not worth a copy.
    if (this.tableVersion === version) {
      this.recent.keep(block, start, end, version, { fields, listSize: this.listSize, fieldCount: this.fieldCount, pseudoAfterRegular: this.pseudoAfterRegular });
    }
    return fields;
  }

  private decodeFields(block: Uint8Array, start: number, end: number): H2Headers {
    this.block = Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.length);
    this.pos = start;
    this.end = end;
    const out: H2Headers = Object.create(null); // a backend may send a field named "constructor" or "__proto__"
    let listSize = 0;
    let fields = 0;
    let regular = false;
    this.pseudoAfterRegular = false;
    while (this.pos < end) {
      const b = block[this.pos];
      let name: string;
      let value: string;
      if (b & 0x80) {
        const e = this.entry(this.int(7));
        name = e[0];
        value = e[1];
      } else if ((b & 0xe0) === 0x20) {
        if (fields > 0) throw new HpackError("table size update after a field");
        const size = this.int(5);
        if (size > this.maxCapacity) throw new HpackError(`table size update ${size} above ${this.maxCapacity}`);
        this.capacity = size;
        this.tableVersion++;
        this.evict(0);
        continue;
      } else {
        const indexing = (b & 0xc0) === 0x40;
        const nameIndex = this.int(indexing ? 6 : 4);
        name = nameIndex === 0 ? this.str(names) : this.entry(nameIndex)[0];
        value = this.str(values);
        if (indexing) this.insert(name, value);
      }
      fields++;
      if (name.charCodeAt(0) === 58 /* ":" */) {
        if (regular) this.pseudoAfterRegular = true;
      } else regular = true;
      listSize += name.length + value.length + entryOverhead;
      if (listSize > this.maxListSize) throw new HpackError(`header list above ${this.maxListSize} bytes`);
      const had = out[name];
      if (had === undefined) out[name] = value;
      else if (typeof had === "string") out[name] = [had, value];
      else had.push(value);
    }
    this.listSize = listSize;
    this.fieldCount = fields;
    return out;
  }

  /** The last decoded block's size (RFC 9113 §6.5.2: octets of names and values plus 32 per field) and field count. */
  listSize = 0;
  fieldCount = 0;
  /** The last block had a pseudo-header after a regular field: a malformed message (RFC 9113 §8.3), which the object form cannot show. */
  pseudoAfterRegular = false;

  /** An integer with an N-bit prefix (RFC 7541 §5.1), at most 2^28: larger is an attack, not a header. */
  private int(prefixBits: number): number {
    const block = this.block;
    const mask = (1 << prefixBits) - 1;
    let value = block[this.pos++] & mask;
    if (value < mask) return value;
    for (let shift = 0; ; shift += 7) {
      if (this.pos >= this.end || shift > 21) throw new HpackError("bad integer");
      const b = block[this.pos++];
      value += (b & 127) * 2 ** shift;
      if ((b & 128) === 0) return value;
    }
  }

  /** A string literal (RFC 7541 §5.2), one char per octet as node:http2 hands header values over; checked as `kind` requires. */
  private str(kind: LiteralCache): string {
    const block = this.block;
    if (this.pos >= this.end) throw new HpackError("truncated string");
    const huffman = (block[this.pos] & 0x80) !== 0;
    const length = this.int(7);
    const start = this.pos;
    const end = start + length;
    if (end > this.end) throw new HpackError("truncated string");
    this.pos = end;
    const known = kind.find(block, start, end, huffman);
    if (known !== undefined) return known;
    let text: string;
    if (!huffman) text = latin1(block, start, end);
    else {
      const n = huffmanDecode(block, start, end);
      if (n < 0) throw new HpackError("bad Huffman string");
      text = latin1(huffmanOutput(), 0, n);
    }
    kind.check(text);
    kind.add(block, start, end, huffman, text);
    return text;
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError("index 0");
    if (index <= staticCount) return staticTable[index];
    const e = this.table[this.table.length - 1 - (index - staticCount - 1)];
    if (!e) throw new HpackError(`index ${index} beyond the dynamic table`);
    return e;
  }

  private insert(name: string, value: string): void {
    this.tableVersion++;
    const size = name.length + value.length + entryOverhead;
    this.evict(size);
    // An entry larger than the whole table empties it and is not added (RFC 7541 §4.4).
    if (size > this.capacity) return;
    this.table.push([name, value]);
    this.tableSize += size;
  }

  /** Drops the oldest entries until `room` more bytes fit. */
  private evict(room: number): void {
    let drop = 0;
    while (this.tableSize + room > this.capacity && drop < this.table.length) {
      const [n, v] = this.table[drop++];
      this.tableSize -= n.length + v.length + entryOverhead;
    }
    if (drop > 0) this.table.splice(0, drop);
  }
}

/** Decoded fields frozen, a repeated field's list too: shared between calls, they must not change. */
function frozen(fields: H2Headers): H2Headers {
  for (const name in fields) {
    const v = fields[name];
    if (typeof v === "object") Object.freeze(v);
  }
  return Object.freeze(fields);
}

type Latin1 = Buffer & { latin1Slice(start: number, end: number): string };

/** Octets as a one-byte-per-char string; Buffer's native latin1Slice is 3× a char-by-char loop. */
function latin1(bytes: Buffer, start: number, end: number): string {
  return (bytes as Latin1).latin1Slice(start, end);
}

/** The static table's index of a whole pseudo-header field kedge sends, or 0. */
function indexedField(name: string, value: string): number {
  if (name === ":status") return value === "200" ? 8 : value === "204" ? 9 : value === "304" ? 11 : value === "404" ? 13 : 0;
  if (name === ":method") return value === "POST" ? 3 : value === "GET" ? 2 : 0;
  if (name === ":scheme") return value === "https" ? 7 : value === "http" ? 6 : 0;
  return name === ":path" && value === "/" ? 4 : 0;
}
/** Fields an intermediary must never index either (RFC 7541 §7.1.3). */
const neverIndexed = new Set(["authorization", "proxy-authorization", "cookie", "set-cookie"]);
/**
 * How a literal with this name starts: its first octet's flags (never-indexed or not) and the
 * static table's index of the name (0: a literal name), in one lookup per field: 0x10 << 8 | index.
 */
const literalStart = new Map<string, number>();
for (let i = staticCount; i >= 1; i--) literalStart.set(staticTable[i][0], i);
for (const name of neverIndexed) literalStart.set(name, (0x10 << 8) | (literalStart.get(name) ?? 0));

// One header block is built at a time, synchronously, in this shared buffer; finishBlock copies it out.
let buf = Buffer.allocUnsafe(4096);
let at = 0;
/** Strings up to this length are copied char by char: cheaper than a native write call. */
const shortString = 48;

function room(n: number): void {
  if (at + n <= buf.length) return;
  const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, at + n));
  buf.copy(bigger, 0, 0, at);
  buf = bigger;
}

function int(first: number, prefixBits: number, value: number): void {
  room(6);
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    buf[at++] = first | value;
    return;
  }
  buf[at++] = first | mask;
  value -= mask;
  while (value >= 128) {
    buf[at++] = (value & 127) | 128;
    value = Math.floor(value / 128);
  }
  buf[at++] = value;
}

function str(s: string): void {
  const n = s.length; // one octet per char, as node:http2 hands header values over
  int(0, 7, n);
  room(n);
  if (n <= shortString) {
    for (let i = 0; i < n; i++) buf[at + i] = s.charCodeAt(i);
    at += n;
  } else at += buf.write(s, at, n, "latin1");
}

/** Starts a header block; add its fields (pseudo-headers first), then finishBlock. */
export function startBlock(): void {
  at = 0;
}

/** Adds one field: a whole static entry for the pseudo-headers kedge sends, else a literal. */
export function addField(name: string, value: string): void {
  const whole = name.charCodeAt(0) === 58 /* ":" */ ? indexedField(name, value) : 0;
  if (whole !== 0) return int(0x80, 7, whole);
  const start = literalStart.get(name);
  if (start === undefined) {
    int(0, 4, 0);
    str(name);
  } else {
    const index = start & 0xff;
    int(start >> 8, 4, index);
    if (index === 0) str(name);
  }
  str(value);
}

/**
 * Adds the field line text[from..eol) ("Name: value" as an HTTP/1.1 peer sent it, colon at `colon`)
 * as a literal with a literal name, lower-cased on the way: no string is made of the name or the
 * value. Returns a hash of the lower-case name, for a caller that looks for repeated names.
 */
export function addFieldLine(text: string, from: number, colon: number, eol: number): number {
  const nameLength = colon - from;
  int(isNeverIndexed(text, from, nameLength) ? 0x10 : 0, 4, 0);
  int(0, 7, nameLength);
  room(nameLength);
  let hash = nameLength;
  for (let i = 0; i < nameLength; i++) {
    let c = text.charCodeAt(from + i);
    if (c >= 65 && c <= 90) c += 32;
    buf[at + i] = c;
    hash = (Math.imul(hash, 31) + c) | 0;
  }
  at += nameLength;
  let start = colon + 1;
  let end = eol;
  while (start < end && isBlank(text.charCodeAt(start))) start++;
  while (end > start && isBlank(text.charCodeAt(end - 1))) end--;
  const n = end - start;
  int(0, 7, n);
  room(n);
  if (n <= shortString) {
    for (let i = 0; i < n; i++) buf[at + i] = text.charCodeAt(start + i);
    at += n;
  } else at += buf.write(text.slice(start, end), at, n, "latin1");
  return hash;
}

const isBlank = (c: number) => c === 32 || c === 9;

/** neverIndexed's names, told from text[at..at+length) without cutting the name out. */
function isNeverIndexed(text: string, at: number, length: number): boolean {
  switch (length) {
    case 6:
      return nameIs(text, at, "cookie");
    case 10:
      return nameIs(text, at, "set-cookie");
    case 13:
      return nameIs(text, at, "authorization");
    case 19:
      return nameIs(text, at, "proxy-authorization");
  }
  return false;
}

/** Adds a field's values as node:http2 holds them: one string, a number, or a repeated field's list. */
export function addFieldValues(name: string, v: string | number | readonly string[]): void {
  if (typeof v === "string") addField(name, v);
  else if (typeof v === "number") addField(name, String(v));
  else for (const one of v) addField(name, one);
}

/**
 * The block built since startBlock: a view of the shared buffer, valid until the next block is
 * started. H2Connection copies it into its frames at once, or keeps a copy for a call that waits.
 */
export function finishBlock(): Uint8Array {
  return buf.subarray(0, at);
}

/**
 * The block built since startBlock, in place: the encoder's shared buffer, whose first
 * currentBlockLength() octets are the block, valid until the next block is started. For a caller
 * that copies it into its frames at once: no view is made (a native call and an object per block).
 */
export function currentBlockBytes(): Buffer {
  return buf;
}

export function currentBlockLength(): number {
  return at;
}

/**
 * Encodes fields as literals without indexing and without Huffman coding: the peer's dynamic
 * table stays empty, so kedge keeps no encoder state and a peer that decodes only the static
 * table (nginx's grpc_pass does) still reads every request. Pseudo-headers must come first.
 */
export function encodeHeaders(fields: OutgoingFields): Uint8Array {
  startBlock();
  for (const name in fields) {
    const v = fields[name];
    if (v !== undefined) addFieldValues(name, v);
  }
  return copyOf(finishBlock());
}
