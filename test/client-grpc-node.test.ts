import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root } from "./helpers/binary.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { startGreeter, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { until } from "./helpers/wait.ts";

// The library must work in Node ≥ 20, whose http2 and TLS are not Bun's: the gRPC entry points,
// bundled for Node with the peers left external (as the package leaves them), run by `node`
// against a kedge that requires client certificates.

const dir = mkdtempSync(join(tmpdir(), "client-grpc-node-"));
let pki: TestPki;
let greeter: GreeterServer;
let kedge: TestKedge;

beforeAll(async () => {
  pki = makeTestPki();
  greeter = await startGreeter("node-backend");
  kedge = await startTestKedge({
    server: { ...plainServer, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile], tls_client_cert_required: true },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
      routes: [{ backend_name: "greeter", authority_host_matcher: "greeter.cluster-1.internal.example.com", authority_port_matcher: 8080 }],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  greeter?.kill();
});

/**
 * Bundles a fixture for Node with the peers external and code split at the dynamic imports, as the
 * package ships them; with `peers`, they resolve from the repo's node_modules as a caller's would.
 */
async function bundleForNode(fixture: string, peers: boolean): Promise<string> {
  const outdir = mkdtempSync(join(dir, "bundle-"));
  const build = await Bun.build({
    entrypoints: [join(root, "test/fixtures/client-node", fixture)],
    target: "node",
    format: "esm",
    splitting: true,
    external: ["@connectrpc/connect", "@connectrpc/connect-node", "@grpc/grpc-js"],
    outdir,
  });
  expect(build.success).toBe(true);
  if (peers) symlinkSync(join(root, "node_modules"), join(outdir, "node_modules"));
  return join(outdir, fixture.replace(/\.ts$/, ".js"));
}

async function runNode(script: string, arg = ""): Promise<unknown> {
  const node = Bun.spawn(["node", script, arg], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(node.stdout).text(), new Response(node.stderr).text(), node.exited]);
  expect({ code, err }).toEqual({ code: 0, err: "" });
  return JSON.parse(out);
}

describe("gRPC entry points under Node", () => {
  it("Connect: four call kinds and a deadline; grpc-js: a call, a deadline and a cancel", async () => {
    const script = await bundleForNode("grpc-calls.ts", true);
    const options = {
      target: "greeter.cluster-1.internal.example.com:8080",
      routes: [{ regexp: { exp: "^[a-z]+[.]cluster-1[.]internal[.]example[.]com$", url: `https://localhost:${kedge.ports.tls}` } }],
      tls: { ca_files: [pki.caFile], client_cert_file: pki.clientCertFile, client_key_file: pki.clientKeyFile },
    };
    const before = greeter.cancelled;
    expect(await runNode(script, JSON.stringify(options))).toEqual({
      connectUnary: "Hello node!",
      connectServerStream: [1, 2, 3],
      connectClientStream: 3,
      connectBidi: ["a", "b"],
      connectDeadline: Code.DeadlineExceeded,
      grpcJsUnary: "Hello node!",
      grpcJsDeadline: grpc.status.DEADLINE_EXCEEDED,
      grpcJsCancel: grpc.status.CANCELLED,
    });
    await until("the backend to see the three cancelled calls", () => greeter.cancelled >= before + 3);
  });

  it("without the gRPC peers installed the client loads, and only a gRPC call names the missing package", async () => {
    expect(await runNode(await bundleForNode("without-peers.ts", false))).toEqual({
      loaded: true,
      grpcTransport: expect.stringContaining("could not load @connectrpc/connect-node, an optional peer dependency"),
      grpcJs: expect.stringContaining("could not load @grpc/grpc-js, an optional peer dependency"),
    });
  });
});
