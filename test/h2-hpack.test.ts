import { describe, expect, it } from "bun:test";
import fc from "fast-check";
import { encodeHeaders, HpackDecoder, HpackError, type H2Headers } from "../src/h2/hpack.ts";
import { huffmanCodes, huffmanDecode as decodeInto, huffmanOutput } from "../src/h2/huffman.ts";

// HPACK as kedge's upstream HTTP/2 client uses it: every decoder case from RFC 7541 Appendix C,
// its error cases, and round trips through the encoder. A fixed seed: CI runs the same cases.
const runs = { seed: 0x4850_4143, numRuns: 300, includeErrorInReport: true };
/** The decoded bytes, or null for invalid input. */
function huffmanDecode(src: Uint8Array, start: number, end: number): Uint8Array | null {
  const n = decodeInto(src, start, end);
  return n < 0 ? null : Uint8Array.from(huffmanOutput().subarray(0, n));
}
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

/** A Huffman encoder for the tests only (kedge never sends Huffman strings). */
function huffmanEncode(bytes: Uint8Array): Uint8Array {
  const codes = huffmanCodes();
  let bits = "";
  for (const b of bytes) bits += codes[b].code.toString(2).padStart(codes[b].bits, "0");
  bits += "1".repeat((8 - (bits.length % 8)) % 8); // padding: the most significant bits of EOS
  return Uint8Array.from(bits.match(/.{8}/g) ?? [], (byte) => parseInt(byte, 2));
}

describe("Huffman code (RFC 7541 Appendix B)", () => {
  it("derives the table's codes from their lengths", () => {
    const codes = huffmanCodes();
    expect(codes[0]).toEqual({ code: 0x1ff8, bits: 13 });
    expect(codes[" ".charCodeAt(0)]).toEqual({ code: 0x14, bits: 6 });
    expect(codes["0".charCodeAt(0)]).toEqual({ code: 0x0, bits: 5 });
    expect(codes["a".charCodeAt(0)]).toEqual({ code: 0x3, bits: 5 });
    expect(codes["\\".charCodeAt(0)]).toEqual({ code: 0x7fff0, bits: 19 });
    expect(codes[255]).toEqual({ code: 0x3ffffee, bits: 26 });
    expect(codes[256]).toEqual({ code: 0x3fffffff, bits: 30 }); // EOS
  });

  it("decodes the RFC's examples", () => {
    const cases: Array<[string, string]> = [
      ["f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"],
      ["a8eb 1064 9cbf", "no-cache"],
      ["25a8 49e9 5ba9 7d7f", "custom-key"],
      ["25a8 49e9 5bb8 e8b4 bf", "custom-value"],
    ];
    for (const [code, text] of cases) {
      const bytes = hex(code);
      expect(Buffer.from(huffmanDecode(bytes, 0, bytes.length)!).toString("latin1")).toBe(text);
    }
  });

  it("decodes whatever the code encodes, any octets", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const encoded = huffmanEncode(bytes);
        expect([...huffmanDecode(encoded, 0, encoded.length)!]).toEqual([...bytes]);
      }),
      runs,
    );
  });

  it("rejects padding that is not a short prefix of EOS, and EOS itself", () => {
    // "a" is 00011: padded with three 1-bits it decodes, with three 0-bits it is a cut-off code.
    expect([...huffmanDecode(Uint8Array.of(0x1f), 0, 1)!]).toEqual([0x61]);
    expect(huffmanDecode(Uint8Array.of(0x18), 0, 1)).toBeNull();
    const longPadding = Uint8Array.from([...huffmanEncode(Buffer.from("a")), 0xff]); // 8+ bits of padding
    expect(huffmanDecode(longPadding, 0, longPadding.length)).toBeNull();
    const eos = Uint8Array.from([0xff, 0xff, 0xff, 0xff]); // 30 one-bits: EOS, then padding
    expect(huffmanDecode(eos, 0, eos.length)).toBeNull();
  });
});

describe("HPACK decoder (RFC 7541 Appendix C)", () => {
  const requests = {
    ":method": "GET", ":scheme": "http", ":path": "/", ":authority": "www.example.com",
  };
  const second = { ...requests, "cache-control": "no-cache" };
  const third = { ":method": "GET", ":scheme": "https", ":path": "/index.html", ":authority": "www.example.com", "custom-key": "custom-value" };

  it("C.3: requests without Huffman coding, sharing one dynamic table", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"))).toEqual(requests);
    expect(d.decode(hex("8286 84be 5808 6e6f 2d63 6163 6865"))).toEqual(second);
    expect(d.decode(hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"))).toEqual(third);
  });

  it("C.4: the same requests with Huffman coding", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))).toEqual(requests);
    expect(d.decode(hex("8286 84be 5886 a8eb 1064 9cbf"))).toEqual(second);
    expect(d.decode(hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"))).toEqual(third);
  });

  it("C.5: responses that evict entries from a 256-byte table", () => {
    const d = new HpackDecoder(256);
    const location = "https://www.example.com";
    expect(d.decode(hex(`4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d
      546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`))).toEqual({
      ":status": "302", "cache-control": "private", date: "Mon, 21 Oct 2013 20:13:21 GMT", location,
    });
    expect(d.decode(hex("4803 3330 37c1 c0bf"))).toEqual({
      ":status": "307", "cache-control": "private", date: "Mon, 21 Oct 2013 20:13:21 GMT", location,
    });
    expect(d.decode(hex(`88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f
      6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369
      6f6e 3d31`))).toEqual({
      ":status": "200", "cache-control": "private", date: "Mon, 21 Oct 2013 20:13:22 GMT", location,
      "content-encoding": "gzip", "set-cookie": "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    });
  });

  it("C.6: the same responses with Huffman coding", () => {
    const d = new HpackDecoder(256);
    expect(d.decode(hex(`4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b
      97c8 e9ae 82ae 43d3`))).toEqual({
      ":status": "302", "cache-control": "private", date: "Mon, 21 Oct 2013 20:13:21 GMT", location: "https://www.example.com",
    });
    expect(d.decode(hex("4883 640e ffc1 c0bf"))[":status"]).toBe("307");
    expect(d.decode(hex(`88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf
      cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07`))["set-cookie"]).toBe(
      "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    );
  });

  it("collects a repeated name's values in order", () => {
    const block = encodeHeaders({ ":status": "200", "x-a": ["1", "2", "3"] });
    expect(new HpackDecoder().decode(block)).toEqual({ ":status": "200", "x-a": ["1", "2", "3"] });
  });

  it("rejects broken input as a compression error, naming the fault", () => {
    const bad: Array<[string, string | RegExp]> = [
      ["80", "index 0"],
      ["be", "index 62 beyond the dynamic table"],
      ["0f", "bad integer"], // a 4-bit prefix at its maximum with no continuation byte
      ["ff ff ff ff ff 0f", "bad integer"], // above 2^28
      ["00 05 61 62", "truncated string"],
      ["3f e2 1f", "table size update 4097 above 4096"],
      ["82 20", "table size update after a field"],
      ["00 01 41 00", /bad field name/], // "A": not lowercase
      ["00 01 61 03 61 0d 61", /NUL, CR or LF/],
      ["00 01 61 84 ff ff ff ff", "bad Huffman string"],
    ];
    for (const [input, message] of bad) {
      let err: unknown;
      try {
        new HpackDecoder().decode(hex(input));
      } catch (e) {
        err = e;
      }
      expect([input, err]).toEqual([input, expect.any(HpackError)]);
      expect((err as Error).message).toMatch(message);
    }
  });

  it("reuses a decoded literal only for the same octets read the same way, and never one that failed its check", () => {
    const coded = huffmanEncode(Buffer.from("text/plain")); // octets 49 7c a5 8a e8 19 aa: no NUL, CR or LF raw either
    expect(coded.some((b) => b === 0 || b === 10 || b === 13)).toBe(false);
    const literal = (huffman: boolean, octets: Uint8Array) => Buffer.concat([Buffer.from([0x0f, 0x10, (huffman ? 0x80 : 0) | octets.length]), octets]);
    // content-type (static name 31) with the same octets, raw then Huffman-coded, then raw again
    for (const huffman of [false, true, false, true]) {
      const decoded = new HpackDecoder().decode(literal(huffman, coded));
      expect(decoded["content-type"]).toBe(huffman ? "text/plain" : Buffer.from(coded).toString("latin1"));
    }
    for (let i = 0; i < 2; i++) {
      expect(() => new HpackDecoder().decode(hex("00 01 41 00"))).toThrow(/bad field name/);
      expect(() => new HpackDecoder().decode(hex("00 01 61 03 61 0d 61"))).toThrow(/NUL, CR or LF/);
    }
  });

  it("tells apart literals that share their length and their first, last and inner octets", () => {
    // Values of one length differing only at octets the cache's slot does not read: each decodes as itself, again and again.
    const values = ["a0000000b", "a1000000b", "a0000001b", "a00000x0b", "a0000000b"];
    const literal = (value: string) => Buffer.concat([Buffer.from([0x0f, 0x10, value.length]), Buffer.from(value, "latin1")]);
    for (let round = 0; round < 3; round++) {
      for (const value of values) expect(new HpackDecoder().decode(literal(value))["content-type"]).toBe(value);
    }
  });

  it("bounds the decoded header list", () => {
    const block = encodeHeaders({ "x-big": "v".repeat(2000) });
    expect(() => new HpackDecoder(4096, 1000).decode(block)).toThrow("header list above 1000 bytes");
  });
});

describe("HPACK decoder: blocks seen again (RecentBlocks)", () => {
  it("gives a block seen again the same frozen fields, with its list size, count and pseudo-header order", () => {
    const d = new HpackDecoder();
    const request = hex("8286 84"); // :method GET, :scheme http, :path /: the static table only
    const late = hex("00 01 61 01 62 82"); // a: b, then :method GET: a pseudo-header after a regular field
    const first = d.decode(request);
    expect(first).toEqual({ ":method": "GET", ":scheme": "http", ":path": "/" });
    expect(Object.isFrozen(first)).toBe(true);
    expect(d.decode(late)).toEqual({ a: "b", ":method": "GET" });
    expect([d.pseudoAfterRegular, d.fieldCount, d.listSize]).toEqual([true, 2, 2 + 7 + 3 + 2 * 32]);
    expect(d.decode(request)).toBe(first);
    expect([d.pseudoAfterRegular, d.fieldCount, d.listSize]).toEqual([false, 3, 7 + 3 + 7 + 4 + 5 + 1 + 3 * 32]);
    expect(d.decode(late)).toEqual({ a: "b", ":method": "GET" });
    expect([d.pseudoAfterRegular, d.fieldCount]).toEqual([true, 2]);
    // The same octets elsewhere in a larger read are the same block.
    expect(d.decode(Buffer.concat([hex("ffff"), request, hex("ff")]), 2, 5)).toBe(first);
  });

  it("keeps the last two blocks: a backend's headers and trailers, call after call", () => {
    const d = new HpackDecoder();
    const headers = encodeHeaders({ ":status": "200", "content-type": "application/grpc" });
    const trailers = encodeHeaders({ "grpc-status": "0", "grpc-message": "" });
    const h = d.decode(headers);
    const t = d.decode(trailers);
    for (let call = 0; call < 3; call++) {
      expect(d.decode(headers)).toBe(h);
      expect(d.decode(trailers)).toBe(t);
    }
    const other = d.decode(encodeHeaders({ ":status": "404" }));
    expect(d.decode(trailers)).toBe(t); // the older of the two made room
    expect(d.decode(headers)).not.toBe(h);
    expect(d.decode(headers)).toEqual(h);
    expect(other).toEqual({ ":status": "404" });
  });

  it("decodes again a block that changed the dynamic table, and one whose entries changed since", () => {
    const d = new HpackDecoder();
    const insertX1 = hex("40 01 78 01 31"); // x: 1, with incremental indexing
    expect(d.decode(insertX1)).toEqual({ x: "1" });
    expect(d.decode(insertX1)).toEqual({ x: "1" }); // inserted again: entries 62 and 63 both hold it
    expect(d.decode(hex("bf"))).toEqual({ x: "1" }); // index 63
    const newest = hex("be"); // index 62, the newest entry
    expect(d.decode(newest)).toEqual({ x: "1" });
    expect(d.decode(newest)).toEqual({ x: "1" });
    expect(d.decode(hex("40 01 78 01 32"))).toEqual({ x: "2" }); // x: 2 is the newest now
    expect(d.decode(newest)).toEqual({ x: "2" });
    expect(d.decode(hex("20"))).toEqual({}); // a size update to 0: the table empties
    expect(() => d.decode(newest)).toThrow("index 62 beyond the dynamic table");
  });

  it("hands out fields that cannot be changed, a repeated field's values included", () => {
    const fields = new HpackDecoder().decode(encodeHeaders({ ":status": "200", "x-a": ["1", "2"] }));
    expect(() => {
      (fields as Record<string, unknown>)["x-b"] = "3";
    }).toThrow();
    expect(() => {
      delete (fields as Record<string, unknown>)[":status"];
    }).toThrow();
    expect(() => (fields["x-a"] as string[]).push("3")).toThrow();
    expect(fields).toEqual({ ":status": "200", "x-a": ["1", "2"] });
  });
});

describe("HPACK encoder", () => {
  const token = fc.stringMatching(/^[a-z0-9!#$%&'*+.^_`|~-]{1,40}$/);
  // Any octet but NUL, CR and LF, one char per octet as node:http2 hands values over.
  const value = fc.string({ unit: fc.integer({ min: 1, max: 255 }).filter((c) => c !== 10 && c !== 13).map((c) => String.fromCharCode(c)), maxLength: 300 });

  it("encodes what the decoder reads back, repeated names and long values included", () => {
    fc.assert(
      fc.property(fc.dictionary(token, fc.oneof(value, fc.array(value, { minLength: 2, maxLength: 4 }))), (fields) => {
        const decoded: H2Headers = new HpackDecoder(4096, 1 << 20).decode(encodeHeaders({ ":method": "POST", ":path": "/p", ...fields }));
        expect(decoded).toEqual({ ":method": "POST", ":path": "/p", ...fields });
      }),
      runs,
    );
  });

  it("indexes only from the static table: whole fields where it has them, never-indexed credentials", () => {
    const block = encodeHeaders({ ":method": "POST", ":scheme": "https", ":path": "/a", authorization: "Bearer x", te: "trailers" });
    expect(block[0]).toBe(0x83); // :method POST
    expect(block[1]).toBe(0x87); // :scheme https
    expect(block[2]).toBe(0x04); // :path, literal without indexing, static name 4
    const auth = block.indexOf(0x1f); // never indexed, name index 23 = 15 + 8
    expect(block[auth + 1]).toBe(23 - 15);
    // te is not in the static table: a literal name, not indexed.
    const te = Buffer.from(block).indexOf(Buffer.from([0x00, 0x02, 0x74, 0x65]));
    expect(te).toBeGreaterThan(auth);
    const more = encodeHeaders({ cookie: "a=b", "content-type": "application/grpc", "x-id": "1" });
    expect([...more.subarray(0, 2)]).toEqual([0x1f, 32 - 15]); // cookie: never indexed, static name 32
    expect(more[2 + 1 + 3]).toBe(0x0f); // content-type: literal without indexing, static name 31 = 15 + 16
    expect(more[2 + 1 + 3 + 1]).toBe(31 - 15);
    expect(new HpackDecoder().decode(more)).toEqual({ cookie: "a=b", "content-type": "application/grpc", "x-id": "1" });
    // Nothing was added to a dynamic table: decoding it twice with one decoder gives the same fields.
    const d = new HpackDecoder();
    expect(d.decode(block)).toEqual(d.decode(block));
  });
});
