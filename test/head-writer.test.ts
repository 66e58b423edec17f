import { describe, expect, it } from "bun:test";
import { HeadWriter } from "../src/net/head-writer";
import { scratch } from "../src/net/socket-writer";
import { mulberry32 } from "./helpers/rng";

/** What the writer holds, as latin1 text. */
const held = (w: HeadWriter) => Buffer.from(w.buf.subarray(0, w.at)).toString("latin1");

describe("head writer", () => {
  it("lays out text and ranges of any length as latin1 bytes, chars above 0xFF keeping their low byte like Buffer's latin1", () => {
    const rnd = mulberry32(7);
    for (let round = 0; round < 200; round++) {
      const w = new HeadWriter().start();
      const pieces: string[] = [];
      for (let p = 0, n = 1 + Math.floor(rnd() * 6); p < n; p++) {
        // Lengths either side of the native-copy threshold.
        const length = Math.floor(rnd() * 300);
        const s = Array.from({ length }, () => String.fromCharCode(rnd() < 0.05 ? 0x100 + Math.floor(rnd() * 0xfeff) : Math.floor(rnd() * 256))).join("");
        const from = Math.floor(rnd() * (length + 1));
        const end = from + Math.floor(rnd() * (length - from + 1));
        if (rnd() < 0.5) {
          w.text(s);
          pieces.push(s);
        } else {
          w.range(s, from, end);
          pieces.push(s.slice(from, end));
        }
      }
      expect(Buffer.from(w.buf.subarray(0, w.at))).toEqual(Buffer.from(pieces.join(""), "latin1"));
    }
  });

  it("leaves out the marked lines but those of a kept kind, copying from the bytes the head was read from", () => {
    // One line longer than the native-copy threshold, so both copy paths run.
    const long = `x-long: ${"v".repeat(60)}`;
    const text = `HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\n${long}\r\nc: 3\r\nd: 4\r\n`;
    const line = (name: string) => [text.indexOf(`${name}:`), text.indexOf("\r\n", text.indexOf(`${name}:`)) + 2];
    const drops = [...line("a"), 0, ...line("c"), 1, ...line("d"), 2];
    const w = new HeadWriter();
    for (const [read, shift] of [[Buffer.from(text, "latin1"), 0], [Buffer.from(`junk${text}junk`, "latin1"), 4]] as const) {
      w.start().bytesWithout(read, shift, 17, text.length, drops);
      expect(held(w)).toBe(`b: 2\r\n${long}\r\n`);
      w.start().bytesWithout(read, shift, 17, text.length, drops, (1 << 1) | (1 << 2));
      expect(held(w)).toBe(`b: 2\r\n${long}\r\nc: 3\r\nd: 4\r\n`);
      w.start().bytesWithout(read, shift, 17, text.length, undefined);
      expect(held(w)).toBe(`a: 1\r\nb: 2\r\n${long}\r\nc: 3\r\nd: 4\r\n`);
    }
  });

  it("outgrows the shared buffer into one of its own, keeping what was written, and starts over in the shared one", () => {
    const w = new HeadWriter().start();
    w.line("x-first", "1");
    const big = "v".repeat(scratch.length);
    w.line("x-big", big);
    w.bytes(Buffer.from("tail"));
    const own = w.ownBytes();
    expect(own).toBeDefined();
    expect(Buffer.from(own!).toString("latin1")).toBe(`x-first: 1\r\nx-big: ${big}\r\ntail`);
    w.start().line("x-small", "2");
    expect(w.ownBytes()).toBeUndefined();
    expect(w.buf).toBe(scratch);
    expect(held(w)).toBe("x-small: 2\r\n");
  });
});
