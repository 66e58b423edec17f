import { expect, it } from "bun:test";
import { decimalIn } from "../src/net/fields";
import { mulberry32 } from "./helpers/rng";

it("reads a Content-Length value exactly as the 1*DIGIT rule between optional whitespace does", () => {
  const rnd = mulberry32(11);
  const alphabet = ["0", "1", "5", "9", " ", "\t", "+", "-", ".", "e", "x", ",", "a"];
  for (let round = 0; round < 20_000; round++) {
    const s = Array.from({ length: Math.floor(rnd() * 19) }, () => alphabet[Math.floor(rnd() * (rnd() < 0.7 ? 4 : alphabet.length))]).join("");
    const pad = "xx";
    const trimmed = s.replace(/^[ \t]+|[ \t]+$/g, "");
    const expected = /^\d{1,15}$/.test(trimmed) ? Number(trimmed) : -1;
    expect(decimalIn(pad + s + pad, pad.length, pad.length + s.length), JSON.stringify(s)).toBe(expected);
  }
  expect(decimalIn("999999999999999", 0, 15)).toBe(999999999999999);
  expect(decimalIn("1000000000000000", 0, 16)).toBe(-1);
});
