import { describe, expect, it } from "bun:test";
import { isIP as nodeIsIP } from "node:net";
import { STATUS_CODES } from "node:http";
import fc from "fast-check";
import { isIP } from "../src/net/ip.ts";
import { statusText } from "../src/net/status-text.ts";
import { messageKey } from "../src/config/message-key.ts";

describe("kedge's own copies of node:net and node:http helpers", () => {
  it("tells IP literals from names as node:net's isIP does", () => {
    const cases = ["127.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "1.2.3", "01.2.3.4", "::1", "::", "fe80::1%eth0", "2001:db8::8a2e:370:7334", "::ffff:10.0.0.1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "example.com", "localhost", "", "[::1]", "1.2.3.4:80"];
    for (const c of cases) expect([c, isIP(c)]).toEqual([c, nodeIsIP(c) as 0 | 4 | 6]);
    fc.assert(fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), fc.domain(), fc.string()), (text) => isIP(text) === nodeIsIP(text)));
  });

  it("has node:http's reason phrase for every status code", () => {
    expect(statusText).toEqual(STATUS_CODES as Record<number, string>);
  });
});

describe("messageKey", () => {
  it("is equal for equal contents whatever the order their fields were set in", () => {
    expect(messageKey({ $typeName: "x", a: 1, b: { c: [1, 2], d: "e" } })).toBe(messageKey({ b: { d: "e", c: [1, 2] }, a: 1, $typeName: "x" }));
    expect(messageKey({ a: 1, unset: undefined })).toBe(messageKey({ a: 1 }));
  });

  it("differs for different contents, bigint and bytes fields included", () => {
    expect(messageKey({ seconds: 5n })).not.toBe(messageKey({ seconds: 6n }));
    expect(messageKey({ seconds: 5n })).not.toBe(messageKey({ seconds: 5 }));
    expect(messageKey({ data: new Uint8Array([1, 2]) })).not.toBe(messageKey({ data: new Uint8Array([1, 3]) }));
    expect(messageKey({ list: [1, 2] })).not.toBe(messageKey({ list: [2, 1] }));
  });
});
