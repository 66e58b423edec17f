import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import http from "node:http";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runInNewContext } from "node:vm";
import { ensureBinary, healthy, referenceConfigs, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";

// kedge Go's end-to-end matrix: kedge and winch as two processes of the compiled binary, on the
// reference configs and ports (test/fixtures/kedge-go-configs/README.md), real TLS with client certificates
// between them, and test backends that check Authorization when backend auth is on.

const dir = mkdtempSync(join(tmpdir(), "winch-e2e-"));
const suffix = "localhost.internal.example.com";
let pki: TestPki;
let backendAuth = true;
const httpSeen: http.IncomingHttpHeaders[] = [];
let httpBackend: http.Server;
let greeter: GreeterServer;
let kedge: Running | undefined;
let winch: Running;

/** kedge Go's HTTP test backend: GET /?name=X → "Hello X!", 401 without the token when backend auth is on. */
function startHttpBackend(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    httpSeen.push(req.headers);
    if (backendAuth && req.headers.authorization !== "Bearer secret-token2") {
      res.writeHead(401, { "content-type": "text/plain" }).end("backend: missing or wrong authorization\n");
      return;
    }
    const name = new URL(req.url ?? "/", "http://x").searchParams.get("name") ?? "world";
    res.writeHead(200, { "content-type": "text/plain" }).end(`Hello ${name}!`);
  });
  return new Promise((resolve) => server.listen(18270, "127.0.0.1", () => resolve(server)));
}

/** kedge on the reference ports, client certificates required; `bearer` adds kedge Go's static proxy token. */
async function startKedge(bearer: boolean): Promise<void> {
  // SIGTERM, not SIGKILL: the supervisor exits only once its workers have. Killed, it would leave
  // them draining on these ports (SO_REUSEPORT) while the next kedge starts, and a call winch sent
  // one of them would be served on the previous config.
  kedge?.proc.kill("SIGTERM");
  await kedge?.proc.exited;
  kedge = runBinary([
    "--kedge_config_director_config_path", join(referenceConfigs, "director.json"),
    "--kedge_config_backendpool_config_path", join(referenceConfigs, "backendpool.json"),
    "--server_bind_address", "127.0.0.1", "--server_http_port", "18170",
    "--server_http_tls_port", "18171", "--server_grpc_tls_port", "18172",
    "--server_tls_cert_file", pki.serverCertFile, "--server_tls_key_file", pki.serverKeyFile,
    "--server_tls_client_ca_files", pki.caFile, "--server_tls_client_cert_required",
    ...(bearer ? ["--unsafe_bearer_token_proxy_auth", "secret-bearer-token"] : []),
    "--log_level", "warn",
  ], dir);
  await waitFor(healthy(18170), "kedge to become healthy", kedge);
}

beforeAll(async () => {
  ensureBinary();
  pki = makeTestPki();
  httpBackend = await startHttpBackend();
  greeter = await startGreeter("e2e", undefined, { port: 18271, requiredAuthorization: () => (backendAuth ? "bearer secret-token" : undefined) });
  await startKedge(false);
  winch = runBinary([
    "winch",
    "--server_mapper_config_path", join(referenceConfigs, "winch_mapper.json"),
    "--server_auth_config_path", join(referenceConfigs, "winch_auth.json"),
    "--server_http_port", "18070", "--server_grpc_port", "18071", "--server_debug_port", "18072",
    "--client_tls_root_ca_files", pki.caFile, "--client_tls_cert_file", pki.clientCertFile, "--client_tls_key_file", pki.clientKeyFile,
    "--pac_redirect_sh_expressions", "*.*.internal.example.com",
  ], dir);
  await waitFor(healthy(18072), "winch to become healthy", winch);
});

afterAll(async () => {
  winch?.proc.kill("SIGKILL");
  kedge?.proc.kill("SIGTERM");
  await kedge?.proc.exited;
  httpBackend?.closeAllConnections();
  httpBackend?.close();
  await greeter?.close();
});

const viaWinch = (host: string, extra: string[] = []) => curl(["-x", "http://127.0.0.1:18070", ...extra, `http://${host}.${suffix}:18270/?name=kedge`]);

function grpcClient(host: string): grpc.Client {
  return new GreeterClient("127.0.0.1:18071", grpc.credentials.createInsecure(), { "grpc.default_authority": `${host}.${suffix}:18271` });
}

async function sayHello(host: string) {
  const client = grpcClient(host);
  try {
    return await unary(client, "sayHello", { name: "kedge" });
  } finally {
    client.close();
  }
}

describe("kedge Go's e2e matrix through winch (backend auth on)", () => {
  it("HTTP: winch injects the backend's token → 200 Hello kedge!, with a winch request id and kedge's backend name", async () => {
    const r = await viaWinch("test_endpoint", ["-H", "Authorization: Bearer the-clients-own"]);
    expect(r.status).toBe(200);
    expect(r.body).toBe("Hello kedge!");
    expect(r.headers["x-kedge-backend-name"]).toBe("test_endpoint");
    const seen = httpSeen.at(-1)!;
    expect(seen.authorization).toBe("Bearer secret-token2"); // the client's own was overwritten
    expect(String(seen["x-kedge-request-id"])).toMatch(/^winch-[0-9a-f-]{36}$/);
    expect(r.headers["x-kedge-request-id"]).toBe(String(seen["x-kedge-request-id"]));
    expect(seen.host).toBe(`test_endpoint.${suffix}:18270`);
  });

  it("HTTP: no backend auth on the route → 401 from the backend", async () => {
    const r = await viaWinch("no_auth");
    expect(r.status).toBe(401);
    expect(r.body).toContain("backend: missing or wrong authorization");
    expect(r.headers["x-kedge-error"]).toBeUndefined(); // the backend said no, not kedge or winch
  });

  it("gRPC: winch injects the backend's token → Hello kedge!", async () => {
    const r = await sayHello("test_endpoint");
    expect(r.error).toBeUndefined();
    expect(r.response.message).toBe("Hello kedge!");
    expect(r.response.auth).toBe("Bearer secret-token");
    expect(r.response.requestId).toMatch(/^winch-/);
  });

  it("gRPC: the token winch injects replaces the client's own authorization metadata", async () => {
    const client = grpcClient("test_endpoint");
    try {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", "Bearer the-clients-own");
      const r = await unary(client, "sayHello", { name: "kedge" }, metadata);
      expect(r.error).toBeUndefined();
      expect(r.response.auth).toBe("Bearer secret-token");
    } finally {
      client.close();
    }
  });

  it("gRPC: no backend auth on the route → UNAUTHENTICATED from the backend", async () => {
    const r = await sayHello("no_auth");
    expect(r.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(r.error?.details).toContain("backend:");
  });

  it("gRPC: all four call kinds pass through winch and kedge", async () => {
    const client = grpcClient("test_endpoint");
    try {
      const counted: number[] = await new Promise((resolve, reject) => {
        const out: number[] = [];
        const call = client.makeServerStreamRequest("/e2e.helloworld.Greeter/CountTo", (v: unknown) => Buffer.from(JSON.stringify(v)), (b: Buffer) => JSON.parse(b.toString()), { n: 5 });
        call.on("data", (m: { i: number }) => out.push(m.i));
        call.on("error", reject);
        call.on("end", () => resolve(out));
      });
      expect(counted).toEqual([1, 2, 3, 4, 5]);
      const total: number = await new Promise((resolve, reject) => {
        const call = client.makeClientStreamRequest("/e2e.helloworld.Greeter/Sum", (v: unknown) => Buffer.from(JSON.stringify(v)), (b: Buffer) => JSON.parse(b.toString()), (err: grpc.ServiceError | null, res?: { total: number }) => (err ? reject(err) : resolve(res!.total)));
        for (const n of [1, 2, 3, 4]) call.write({ n });
        call.end();
      });
      expect(total).toBe(10);
      const echoed: string[] = await new Promise((resolve, reject) => {
        const out: string[] = [];
        const call = client.makeBidiStreamRequest("/e2e.helloworld.Greeter/Chat", (v: unknown) => Buffer.from(JSON.stringify(v)), (b: Buffer) => JSON.parse(b.toString()));
        call.on("data", (m: { echo: string }) => {
          out.push(m.echo);
          if (out.length === 1) call.write({ text: "two" });
          else call.end();
        });
        call.on("error", reject);
        call.on("end", () => resolve(out));
        call.write({ text: "one" });
      });
      expect(echoed).toEqual(["one", "two"]);
    } finally {
      client.close();
    }
  });

  it("gRPC: a target no route maps → UNIMPLEMENTED naming it", async () => {
    const client = new GreeterClient("127.0.0.1:18071", grpc.credentials.createInsecure(), { "grpc.default_authority": "nothing.example.org:443" });
    const r = await unary(client, "sayHello", { name: "x" });
    client.close();
    expect(r.error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(r.error?.details).toBe("nothing.example.org is not a kedge destination");
  });

  it("serves the PAC file: matching hosts through winch, the rest direct", async () => {
    const res = await fetch("http://127.0.0.1:18070/wpad.dat");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-ns-proxy-autoconfig");
    const pac = await res.text();
    expect(pac).toContain("PROXY 127.0.0.1:18070; DIRECT");
    // Run it as a browser would, with PAC's shExpMatch.
    const shExpMatch = (s: string, e: string) => new RegExp(`^${e.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`).test(s);
    const find = (host: string) => runInNewContext(`${pac}\nFindProxyForURL("http://" + host + "/", host)`, { shExpMatch, host });
    expect(find(`test_endpoint.${suffix}`)).toBe("PROXY 127.0.0.1:18070; DIRECT");
    expect(find("example.org")).toBe("DIRECT");
  });
});

describe("kedge Go's e2e matrix through winch (kedge with a bearer proxy token, backend auth off)", () => {
  beforeAll(async () => {
    backendAuth = false;
    await startKedge(true);
  });

  it("HTTP: winch injects the right proxy token → 200, and it never reaches the backend", async () => {
    const r = await viaWinch("bearer_token_auth");
    expect(r.status).toBe(200);
    expect(r.body).toBe("Hello kedge!");
    expect(httpSeen.at(-1)!["proxy-authorization"]).toBeUndefined();
  });

  it("HTTP: a wrong proxy token → 401 from kedge", async () => {
    const r = await viaWinch("wrong_bearer_token_auth");
    expect(r.status).toBe(401);
    expect(r.headers["x-kedge-error-type"]).toBe("unauthorized");
  });

  it("gRPC: the right proxy token → OK; a wrong one → UNAUTHENTICATED from kedge", async () => {
    const ok = await sayHello("bearer_token_auth");
    expect(ok.error).toBeUndefined();
    expect(ok.response.message).toBe("Hello kedge!");
    const wrong = await sayHello("wrong_bearer_token_auth");
    expect(wrong.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(wrong.error?.details).toContain("Token does not match");
  });

  it("CONNECT: curl -p through winch, kedge opens the tunnel with winch's proxy token; a wrong token is refused", async () => {
    const ok = await curl(["-p", "-x", "http://127.0.0.1:18070", `http://bearer_token_auth.${suffix}:18270/?name=tunnel`]);
    expect(ok.status).toBe(200);
    expect(ok.body).toBe("Hello tunnel!");
    // The route takes gRPC too, so winch answered 200 before asking kedge: kedge's 401 closes the connection and is logged.
    const refused = await curl(["-p", "-x", "http://127.0.0.1:18070", `http://wrong_bearer_token_auth.${suffix}:18270/`]);
    expect(refused.exitCode).not.toBe(0);
    await waitFor(() => /"status":401,.*wrong_bearer_token_auth|wrong_bearer_token_auth.*"status":401/.test(winch.stderr()), "winch to log kedge's 401", winch);
  });
});
