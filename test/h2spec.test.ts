import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTestPki } from "./helpers/certs.ts";
import { root } from "./helpers/binary.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { bodyFirstBackend } from "./helpers/body-first-backend.ts";

// kedge's HTTP/2 server held to h2spec (RFC 9113 and RFC 7541 conformance), on the h2c port with
// prior knowledge and on the TLS port with ALPN h2: every test of generic, http2 and hpack passes.

/** ../shared/tools beside the repository, as CI lays it out; H2SPEC names another copy (a git worktree's checkout). */
const h2spec = process.env.H2SPEC ?? join(root, "../shared/tools/h2spec");
const present = existsSync(h2spec);
if (!present && process.env.CI !== "true") console.warn(`h2spec not found at ${h2spec}: the conformance run is skipped (CI=true fails instead)`);

/** Any path, 200 and a body longer than the few bytes some h2spec cases need to see split. */
const backendBody = "kedge h2spec backend: any path answers 200 with this body\n";

let backend: ReturnType<typeof bodyFirstBackend>;
let kedge: TestKedge;

beforeAll(async () => {
  if (!present) return;
  // The request body is read first, whatever the method: a backend that answers before it would
  // let kedge finish a stream before a malformed body (content-length unlike its DATA) arrived to
  // be refused, or before h2spec's frames on the open stream.
  backend = bodyFirstBackend(backendBody);
  const pki = makeTestPki();
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", h2c_port: 0, http_tls_port: 0, admin_port: 0, log_level: "error", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${backend.port}`] } }], routes: [{ backend_name: "app" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  backend?.listener.stop(true);
});

/** Runs h2spec's generic, http2 and hpack sections against a port; returns the ids of the failed tests. */
async function failedTests(port: number, tls: boolean): Promise<{ failed: string[]; total: number }> {
  const report = join(mkdtempSync(join(tmpdir(), "kedge-h2spec-")), "report.xml");
  const args = [h2spec, "generic", "http2", "hpack", "-h", "127.0.0.1", "-p", String(port), "-o", "5", "-j", report, ...(tls ? ["-t", "-k"] : [])];
  const run = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  // A conformant server answers every case at once; each case it leaves unanswered costs the 5 s timeout.
  const killer = setTimeout(() => run.kill(), 100_000);
  const output = await new Response(run.stdout).text();
  await run.exited;
  clearTimeout(killer);
  if (!existsSync(report)) {
    const failedLines = output.split("\n").filter((line) => /^\s*×/.test(line));
    throw new Error(`h2spec did not finish (exit ${run.exitCode}); failed so far:\n${failedLines.join("\n")}`);
  }
  return parseReport(readFileSync(report, "utf8"));
}

/**
 * h2spec's JUnit XML: a <testcase package="http2/5.1" classname="what it sends"> per test, in order
 * within its section, holding <failure> or <error> when it failed; a test's id is its section and
 * its number there (http2/5.1/6), as h2spec's own command line names it.
 */
function parseReport(xml: string): { failed: string[]; total: number } {
  const failed: string[] = [];
  const numbers = new Map<string, number>();
  let total = 0;
  for (const test of xml.matchAll(/<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const section = attribute(test[1], "package");
    const n = (numbers.get(section) ?? 0) + 1;
    numbers.set(section, n);
    total++;
    if (/<(failure|error)\b/.test(test[2] ?? "")) failed.push(`${section}/${n} ${attribute(test[1], "classname")}`);
  }
  return { failed, total };
}

function attribute(attributes: string, name: string): string {
  const value = new RegExp(`\\b${name}="([^"]*)"`).exec(attributes)?.[1] ?? "";
  return value.replace(/&#34;|&quot;/g, '"').replace(/&#39;|&apos;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

describe("HTTP/2 conformance (h2spec)", () => {
  const run = present || process.env.CI !== "true" ? it.skipIf(!present) : it;

  run("passes every generic, http2 and hpack test on the h2c port and the TLS port (ALPN h2)", async () => {
    if (!present) throw new Error(`h2spec is missing at ${h2spec} (see ../shared/tools/README.md)`);
    const [h2c, tls] = await Promise.all([failedTests(kedge.ports.h2c, false), failedTests(kedge.ports.tls, true)]);
    const failures = [...h2c.failed.map((t) => `h2c ${t}`), ...tls.failed.map((t) => `tls ${t}`)];
    expect(failures).toEqual([]);
    expect(h2c.total).toBe(146);
    expect(tls.total).toBe(146);
  }, 110_000);
});
