import { describe, expect, it } from "bun:test";
import fc from "fast-check";
import { expandTemplate, translateRe2 } from "../src/winch/mapper.ts";

// A fixed seed: CI runs the same cases every time; change it locally to explore.
const runs = { seed: 0x72653265, numRuns: 500, includeErrorInReport: true };

/**
 * One piece of a generated expression, written in RE2 syntax and as the JavaScript expression that
 * means the same on the generated subjects. `divergent`: JavaScript (without the "u" flag) reads the
 * RE2 text differently, so translateRe2 must refuse it or translate it.
 */
interface Piece {
  re2: string;
  js: string;
  divergent: boolean;
}

const piece = (re2: string, js = re2, divergent = false): Piece => ({ re2, js, divergent });
const join = (pieces: Piece[], sep = ""): Piece => ({
  re2: pieces.map((p) => p.re2).join(sep),
  js: pieces.map((p) => p.js).join(sep),
  divergent: pieces.some((p) => p.divergent),
});
// Named groups get their names when the whole expression is rendered, so names never repeat.
const groupName = "\u0000";

const sameInBoth = fc.constantFrom(
  "a", "b", "x", "z", "p", "A", "C", "Q", "P", "0", "1", "-", "\\.", "\\\\", "\\-",
  "[a-z]", "[a-z0-9-]", "[^.]", "[0-9]", "[.]", "[-a]", "[a-c-]", "[(?P<a>]", "[\\\\z]", "\\d", "\\w", ".",
);
const divergentInJs = fc.constantFrom<[string, string]>(
  ["\\pL", "[A-Za-z]"],
  ["\\p{L}", "[A-Za-z]"],
  ["\\PL", "[^A-Za-z]"],
  ["\\p{Nd}", "[0-9]"],
  ["[[:alpha:]]", "[A-Za-z]"],
  ["[^[:digit:]]", "[^0-9]"],
  ["[a[:digit:]]", "[a0-9]"],
  ["\\Qa.b\\E", "a\\.b"],
  ["\\x{61}", "a"],
  ["[]a]", "[\\]a]"],
  ["[^]a]", "[^\\]a]"],
);
const atom: fc.Arbitrary<Piece> = fc.oneof(
  { weight: 6, arbitrary: sameInBoth.map((s) => piece(s)) },
  { weight: 1, arbitrary: divergentInJs.map(([re2, js]) => piece(re2, js, true)) },
);
const quantifier = fc.constantFrom("", "", "*", "+", "?", "{1,2}", "{2}", "*?", "+?");
const assertion = fc.constantFrom<[string, string, boolean]>(["^", "^", false], ["$", "$", false], ["\\b", "\\b", false], ["\\A", "(?<![\\s\\S])", true]);

const { expression } = fc.letrec<{ expression: Piece; term: Piece; group: Piece }>((tie) => ({
  expression: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.array(tie("term"), { minLength: 1, maxLength: 4 }).map((terms) => join(terms)),
    fc.array(fc.array(tie("term"), { minLength: 1, maxLength: 3 }).map((terms) => join(terms)), { minLength: 2, maxLength: 3 }).map((alts) => join(alts, "|")),
  ),
  term: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.tuple(atom, quantifier).map(([a, q]) => join([a, piece(q)])),
    fc.tuple(tie("group"), quantifier).map(([g, q]) => join([g, piece(q)])),
    assertion.map(([re2, js, divergent]) => piece(re2, js, divergent)),
  ),
  group: fc.tuple(fc.constantFrom("named", "capture", "plain"), tie("expression")).map(([kind, inner]) =>
    kind === "named"
      ? join([piece(`(?P<${groupName}>`, `(?<${groupName}>`), inner, piece(")")])
      : join([piece(kind === "capture" ? "(" : "(?:"), inner, piece(")")]),
  ),
}));

const leadingFlags = fc.constantFrom<[string, string]>(["", ""], ["(?i)", "i"], ["(?s)", "s"], ["(?is)", "is"]);

/** An RE2 expression, its JavaScript equivalent (source and flags), and whether it uses divergent syntax. */
const re2Case = fc.tuple(leadingFlags, expression).map(([[re2Flags, jsFlags], body]) => {
  let re2Names = 0;
  let jsNames = 0;
  return {
    re2: re2Flags + body.re2.replaceAll(groupName, () => `g${re2Names++}`),
    js: body.js.replaceAll(groupName, () => `g${jsNames++}`),
    flags: jsFlags,
    divergent: body.divergent,
  };
});
const subject = fc.string({ unit: fc.constantFrom("a", "b", "x", "z", "p", "A", "B", "C", "P", "0", "1", "-", ".", "\\", "]", "\n"), maxLength: 10 });

function sameMatch(a: RegExpExecArray | null, b: RegExpExecArray | null): void {
  expect(a === null).toBe(b === null);
  if (!a || !b) return;
  expect([...a]).toEqual([...b]);
  expect(a.index).toBe(b.index);
  expect({ ...a.groups }).toEqual({ ...b.groups });
}

describe("RE2 translation (winch regexp routes)", () => {
  it("behaves like the equivalent JavaScript expression, or refuses RE2 syntax JavaScript reads differently", () => {
    fc.assert(
      fc.property(re2Case, fc.array(subject, { minLength: 1, maxLength: 8 }), (c, subjects) => {
        const expected = new RegExp(c.js, c.flags);
        let translated: RegExp;
        try {
          translated = translateRe2(c.re2);
        } catch (e) {
          // Refusing is only right for syntax JavaScript would read differently.
          expect({ refused: c.re2, because: (e as Error).message, divergent: c.divergent }).toMatchObject({ divergent: true });
          return;
        }
        for (const s of subjects) sameMatch(translated.exec(s), expected.exec(s));
      }),
      runs,
    );
  });

  it("refuses \\C, \\z and inline flags anywhere but the start", () => {
    const refused = fc.constantFrom("\\C", "\\z", "(?i)", "(?s)", "(?m)", "(?U)", "(?i:a)", "(?-i)", "(?i-s:a)", "\\pN", "\\PL", "\\p{Greek}");
    fc.assert(
      fc.property(re2Case, refused, re2Case, (before, construct, after) => {
        // "a" first: a leading "(?i)" is allowed, so the construct must not start the expression.
        const exp = `a${before.re2.replace(/^\(\?[is]+\)/, "")}${construct}(?:${after.re2.replace(/^\(\?[is]+\)/, "")})`;
        expect(() => translateRe2(exp)).toThrow();
      }),
      runs,
    );
  });

  it("turns leading (?i)/(?s)/(?m) into RegExp flags", () => {
    fc.assert(
      fc.property(fc.subarray(["i", "m", "s"], { minLength: 1 }), (flags) => {
        const re = translateRe2(`(?${flags.join("")})^(?P<host>[a-z]+)$`);
        expect([...re.flags].sort()).toEqual([...flags].sort());
        expect(re.exec("ABC")?.groups?.host).toBe(flags.includes("i") ? "ABC" : undefined);
      }),
    );
  });
});

/**
 * Go's regexp.Expand (src/regexp/regexp.go, expand and extract), transcribed: "$$" is "$"; a name
 * is the longest run of letters, digits and "_" (braced or not); it is a group number when it is
 * decimal without a leading zero and below 1e8, else a group name; a "$" without a name is kept.
 */
function goExpand(template: string, match: RegExpExecArray, names: readonly (string | undefined)[]): string {
  let out = "";
  let rest = template;
  for (;;) {
    const dollar = rest.indexOf("$");
    if (dollar < 0) break;
    out += rest.slice(0, dollar);
    rest = rest.slice(dollar + 1);
    if (rest.startsWith("$")) {
      out += "$";
      rest = rest.slice(1);
      continue;
    }
    const name = goExtract(rest);
    if (!name) {
      out += "$";
      continue;
    }
    rest = name.rest;
    const index = name.num >= 0 ? name.num : names.indexOf(name.name);
    if (index >= 0 && index < match.length) out += match[index] ?? "";
  }
  return out + rest;
}

function goExtract(text: string): { name: string; num: number; rest: string } | undefined {
  const brace = text.startsWith("{");
  const str = brace ? text.slice(1) : text;
  let end = 0;
  for (const ch of str) {
    if (!/^[\p{L}\p{Nd}_]$/u.test(ch)) break;
    end += ch.length;
  }
  if (end === 0) return undefined;
  const name = str.slice(0, end);
  if (brace) {
    if (str[end] !== "}") return undefined;
    end++;
  }
  let num = 0;
  for (const c of name) {
    if (c < "0" || c > "9" || num >= 1e8) {
      num = -1;
      break;
    }
    num = num * 10 + Number(c);
  }
  if (name[0] === "0" && name.length > 1) num = -1;
  return { name, num, rest: str.slice(end) };
}

describe("URL templates (Go's Expand)", () => {
  const pattern = /(?<name>[a-z]+)-([0-9]*)(?<x_1>q)?(?<é>b)?/;
  const names = [undefined, "name", undefined, "x_1", "é"];
  const unit = fc.constantFrom("$", "$", "$0", "${", "{", "}", "name", "x_1", "é", "nam", "1", "0", "2", "9", "_", "a", ".", "/", "-", "١", "https://");
  const matchSubject = fc.string({ unit: fc.constantFrom("a", "b", "q", "1", "-", "."), maxLength: 12 }).map((s) => `${s}ab-12qb`);

  it("expands ${name}, $name, ${n}, $n and $$ like Go's regexp Expand", () => {
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 12 }), matchSubject, (template, s) => {
        const m = pattern.exec(s)!;
        expect(expandTemplate(template, m)).toBe(goExpand(template, m, names));
      }),
      runs,
    );
  });
});

describe("regressions these properties found", () => {
  it("refuses RE2 syntax JavaScript silently read as something else", () => {
    for (const exp of ["^\\p{L}+$", "^\\PL", "\\Aweb", "^\\Qa.b\\E$", "^[[:alpha:]]+$", "^[]a]$", "\\x{61}"]) expect(() => translateRe2(exp)).toThrow();
  });

  it("accepts an escaped backslash before z", () => {
    expect(translateRe2("^a\\\\z$").test("a\\z")).toBe(true);
  });

  it('treats "$01" as no group, as Go does', () => {
    expect(expandTemplate("[$01][${01}][$1]", /(b)/.exec("abc")!)).toBe("[][][b]");
  });
});
