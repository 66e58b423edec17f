import { describe, expect, it } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";

// What a worker process loads is its static import graph from worker.ts (dynamic imports load only
// where they run). Its supervisor sends it the config decoded, so the config's loader and schemas
// must stay out of that graph, and so must modules whose set-up every process would pay for a
// table or a function kedge has of its own: each costs a worker resident memory (bench/README.md).
const srcRoot = resolve(import.meta.dir, "../src");
const workerEntry = resolve(srcRoot, "server/workers/worker.ts");

/** Every module reached by static imports (type-only ones are erased), and the packages and built-ins named. */
function staticGraph(entry: string): { files: Set<string>; external: Map<string, string> } {
  const files = new Set<string>();
  const external = new Map<string, string>();
  const transpiler = new Bun.Transpiler({ loader: "ts", trimUnusedImports: true });
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const i of transpiler.scanImports(readFileSync(file, "utf8"))) {
      if (i.kind !== "import-statement") continue;
      if (!i.path.startsWith(".")) {
        if (!external.has(i.path)) external.set(i.path, relative(srcRoot, file));
        continue;
      }
      const target = Bun.resolveSync(i.path, dirname(file));
      if (!target.endsWith(".json")) queue.push(target);
    }
  }
  return { files, external };
}

describe("what a worker process loads", () => {
  const { files, external } = staticGraph(workerEntry);
  const reached = [...files].map((f) => relative(srcRoot, f));

  it("loads no config schema, loader or validation: the supervisor sends the config decoded", () => {
    expect(reached.filter((f) => f.startsWith("gen/"))).toEqual([]);
    expect(reached.filter((f) => ["config/load.ts", "config/validate.ts", "config/secrets.ts", "config/compose.ts", "k8s/discovery.ts", "config/watch.ts"].includes(f))).toEqual([]);
    // The wire reader of the gRPC health probe needs no descriptors; the reflection runtime does.
    expect([...external.keys()].filter((p) => p === "@bufbuild/protobuf")).toEqual([]);
  });

  it("loads no YAML or valibot, and no node:http, node:net or node:crypto", () => {
    const unwanted = ["yaml", "valibot", "node:http", "node:net", "node:crypto", "http", "net", "crypto"];
    expect([...external].filter(([p]) => unwanted.includes(p)).map(([p, by]) => `${p} <- ${by}`)).toEqual([]);
  });
});
