import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root } from "./helpers/binary.ts";
import { startTwoClusters, type TwoClusters } from "./helpers/two-clusters.ts";

// kedge/client as a user gets it: `npm run build` makes dist/client, `npm pack` ships it, and an
// empty project installs the tarball offline (the package has no runtime dependencies), then
// imports "kedge/client" from Node and from Bun and type-checks against the shipped .d.ts.

const dir = mkdtempSync(join(tmpdir(), "kedge-client-package-"));
const project = join(dir, "project");
const fixtures = join(root, "test/fixtures/client-package");
let clusters: TwoClusters;
let tarball: string;

/** Runs a command without blocking this process, whose event loop serves the clusters' backends. */
async function run(cmd: string[], cwd: string, env: Record<string, string> = {}) {
  const proc = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env }, timeout: 50_000 });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}

async function mustRun(cmd: string[], cwd: string, env: Record<string, string> = {}) {
  const r = await run(cmd, cwd, env);
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

beforeAll(async () => {
  clusters = await startTwoClusters();
  await mustRun(["npm", "run", "build:client"], root, { PATH: `${join(root, "node_modules/.bin")}:${process.env.PATH}` });
  await mustRun(["npm", "pack", "--pack-destination", dir], root);
  tarball = join(dir, readdirSync(dir).find((f) => f.endsWith(".tgz"))!);
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  await mustRun(["npm", "install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball], project);
  for (const f of ["consumer.mjs", "consumer.ts"]) writeFileSync(join(project, f), readFileSync(join(fixtures, f)));
  writeFileSync(join(project, "options.json"), JSON.stringify({ options: clusters.options(), hosts: clusters.hosts }));
}, 180_000);

afterAll(async () => {
  await clusters?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function expectConsumerResult(stdout: string) {
  const result = JSON.parse(stdout);
  expect(result.cluster1).toMatchObject({ upstream: "cluster-1", url: "/from-package" });
  expect(result.cluster1.headers.authorization).toStartWith("Bearer ");
  expect(result.cluster2).toMatchObject({ upstream: "cluster-2", url: "/from-package" });
  expect(result.echo).toBe("streamed both ways");
  expect(result.refusal).toEqual({ isKedgeError: true, type: "no-route", status: 502 });
  expect(result.abortedMidBody).toBe("AbortError");
}

describe("the kedge/client package", () => {
  it("ships dist/client and package.json, not the kedge binary or the sources", async () => {
    const listing = (await mustRun(["tar", "-tzf", tarball], dir)).stdout.split("\n").filter(Boolean);
    expect(listing).toContain("package/dist/client/index.js");
    expect(listing).toContain("package/dist/client/types/client/index.d.ts");
    expect(listing).toContain("package/package.json");
    expect(listing.filter((f) => f === "package/dist/kedge" || f.startsWith("package/src/") || f.startsWith("package/test/"))).toEqual([]);
  });

  it("installs with nothing else: no runtime dependencies", () => {
    expect(readdirSync(join(project, "node_modules")).sort()).toEqual([".package-lock.json", "kedge"]);
  });

  it("works from Node: both clusters, a streamed body, a KedgeError, an abort; close() lets the process exit", async () => {
    const node = await run(["node", "consumer.mjs", "options.json"], project);
    expect(node.stderr).toBe("");
    expect(node.exitCode).toBe(0);
    expectConsumerResult(node.stdout);
  });

  it("works from Bun", async () => {
    const bun = await run([process.execPath, "consumer.mjs", "options.json"], project);
    expect(bun.stderr).toBe("");
    expect(bun.exitCode).toBe(0);
    expectConsumerResult(bun.stdout);
  });

  it("type-checks a consumer against the shipped .d.ts", async () => {
    // The consumer's own toolchain: TypeScript and Node's types (with the undici types they use).
    mkdirSync(join(project, "node_modules/@types"), { recursive: true });
    symlinkSync(join(root, "node_modules/@types/node"), join(project, "node_modules/@types/node"));
    symlinkSync(join(root, "node_modules/undici-types"), join(project, "node_modules/undici-types"));
    const tsc = await run(
      [join(root, "node_modules/.bin/tsc"), "--noEmit", "--strict", "--skipLibCheck", "false", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--types", "node", "consumer.ts"],
      project,
    );
    expect(tsc.stdout + tsc.stderr).toBe("");
    expect(tsc.exitCode).toBe(0);
  });

  it("serves Connect and grpc-js from Node with the caller's own peers (installed after the fetch-only runs above)", async () => {
    const peers = ["@connectrpc/connect", "@connectrpc/connect-node", "@grpc/grpc-js", "@bufbuild/protobuf"];
    for (const peer of peers) {
      mkdirSync(join(project, "node_modules", peer, ".."), { recursive: true });
      symlinkSync(join(root, "node_modules", peer), join(project, "node_modules", peer));
    }
    const build = await Bun.build({ entrypoints: [join(fixtures, "consumer-grpc.ts")], target: "node", format: "esm", external: ["kedge/client", ...peers], outdir: project });
    expect(build.success).toBe(true);
    const node = await run(["node", "consumer-grpc.js", "options.json"], project);
    expect(node.stderr).toBe("");
    expect(node.exitCode).toBe(0);
    expect(JSON.parse(node.stdout)).toEqual({ connect1: "cluster-1", connect2: "cluster-2", grpcJs1: "cluster-1", grpcJs2: "cluster-2" });
  });
});
