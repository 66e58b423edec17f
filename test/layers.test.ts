import { describe, expect, it } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

// The floors of ../shared/DESIGN.md, top to bottom: a file may import its own floor and the ones
// below, never one above. A folder entry ("server/") covers everything under it; a top-level file
// is named on its own. net/ sits below observe and config because both read its syntax helpers
// (host:port, the peer certificate); h2/ stays above them so the HTTP/2 engine may count and log.
const floors: readonly (readonly string[])[] = [
  ["main.ts", "cli/", "client/"],
  ["winch/"],
  ["server/"],
  ["proxy/"],
  ["runtime.ts"],
  ["router/", "auth/", "backend/", "k8s/", "demo/", "ratelimit/"],
  ["upstream/"],
  ["h2/"],
  ["observe/", "config/"],
  ["net/"],
  ["errors.ts", "version.ts", "gen/"],
];

const srcRoot = resolve(import.meta.dir, "../src");

interface Import {
  from: string;
  line: number;
  to: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return path === join(srcRoot, "gen") ? [] : sourceFiles(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

/** "./x.js" as Bun resolves it: the .ts beside the named .js, or the extensionless name. */
function resolveImport(fromFile: string, specifier: string): string {
  const base = resolve(dirname(fromFile), specifier);
  const candidates = [base.replace(/\.js$/, ".ts"), base, `${base}.ts`, join(base, "index.ts")];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? base;
}

/** Static imports, `export … from`, side-effect and dynamic `import()`, type-only ones included. */
export function importsOf(file: string, text: string): Import[] {
  return ts
    .preProcessFile(text, true, true)
    .importedFiles.filter((ref) => ref.fileName.startsWith("."))
    .map((ref) => ({ from: file, line: text.slice(0, ref.pos).split("\n").length, to: resolveImport(file, ref.fileName) }));
}

function floorOf(file: string): number | undefined {
  const path = relative(srcRoot, file);
  const index = floors.findIndex((floor) => floor.some((entry) => (entry.endsWith("/") ? path.startsWith(entry) : path === entry)));
  return index < 0 ? undefined : index;
}

const show = (file: string) => relative(resolve(srcRoot, ".."), file);
const floorName = (index: number) => floors[index]!.map((entry) => entry.replace(/\/$/, "")).join(" · ");

const files = sourceFiles(srcRoot).sort();
const imports = files.flatMap((file) => importsOf(file, readFileSync(file, "utf8")));
const inSrc = (i: Import) => !relative(srcRoot, i.to).startsWith("..");

/** Strongly connected components of more than one file (Tarjan), each sorted. */
function cycles(edges: readonly Import[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let counter = 0;
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

describe("source layers", () => {
  it("reads static, re-exported, type-only, side-effect and dynamic imports, and none in comments or strings", () => {
    const text = [
      'import type { A } from "./a.js";',
      "import {",
      "  b,",
      '} from "./b.js";',
      'export * from "./c.js";',
      'import "./d.js";',
      'const e = await import("./e.js");',
      '// import("./comment.js")',
      "const s = \"import x from './string.js'\";",
    ].join("\n");
    const found = importsOf(join(srcRoot, "x.ts"), text).map((i) => `${relative(srcRoot, i.to)}:${i.line}`);
    expect(found).toEqual(["a.js:1", "b.js:4", "c.js:5", "d.js:6", "e.js:7"]);
  });

  it("gives every source file a floor and resolves every relative import", () => {
    const unplaced = files.filter((f) => floorOf(f) === undefined).map(show);
    const unresolved = imports.filter((i) => inSrc(i) && !existsSync(i.to)).map((i) => `${show(i.from)}:${i.line} → ${show(i.to)}`);
    expect({ unplaced, unresolved }).toEqual({ unplaced: [], unresolved: [] });
  });

  it("points every import down the floors, never up", () => {
    const climbs = imports.filter(inSrc).flatMap((i) => {
      const from = floorOf(i.from);
      const to = floorOf(i.to);
      if (from === undefined || to === undefined || to >= from) return [];
      return [`${show(i.from)}:${i.line} imports ${show(i.to)} (${floorName(from)} → ${floorName(to)})`];
    });
    expect(climbs).toEqual([]);
  });

  it("has no import cycles between files", () => {
    const found = cycles(imports.filter((i) => inSrc(i) && existsSync(i.to))).map((c) => c.map(show).join(" ⇄ "));
    expect(found).toEqual([]);
  });
});
