import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError } from "@connectrpc/connect";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKedgeClient, type KedgeClient } from "../src/client/index.ts";
import { KedgeError } from "../src/errors.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { collect, connectError, connectGreeter, greeterJson } from "./helpers/connect-greeter.ts";
import { GreeterClient, openChat, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startTcpRelay, type TcpRelay } from "./helpers/tcp-relay.ts";
import { until } from "./helpers/wait.ts";

// kedge/client's gRPC kedgeClient points against a real kedge that requires client certificates and a
// proxy token, in front of a grpc-js Greeter that requires the backend's token. The kedge is
// reached through a TCP relay that counts the client's connections.

const dir = mkdtempSync(join(tmpdir(), "client-grpc-"));
const proxyToken = "proxy-token-0123456789";
let backendToken = "backend-token-one";
const backendTokenFile = join(dir, "backend-token");
let pki: TestPki;
let greeter: GreeterServer;
let kedge: TestKedge;
let relay: TcpRelay;
/** The same kedge at an address its certificate does not name. */
let unnamedRelay: TcpRelay;
let kedgeClient: KedgeClient;

function newClient(): KedgeClient {
  const kedgeUrl = `https://localhost:${relay.port}`;
  const kubeconfig = join(dir, "kubeconfig");
  writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nusers:\n- name: svc\n  user:\n    tokenFile: ${backendTokenFile}\n`);
  return createKedgeClient({
    home: dir,
    tls: { ca_files: [pki.caFile], client_cert_file: pki.clientCertFile, client_key_file: pki.clientKeyFile },
    routes: [
      { direct: { key: "wrong-token.cluster-1.internal.example.com", url: kedgeUrl }, proxy_auth: "wrong", backend_auth: "backend" },
      { direct: { key: "by-ip.cluster-1.internal.example.com", url: `https://127.0.0.1:${relay.port}` }, proxy_auth: "proxy", backend_auth: "backend" },
      { direct: { key: "by-unnamed-ip.cluster-1.internal.example.com", url: `https://127.0.0.2:${unnamedRelay.port}` }, proxy_auth: "proxy", backend_auth: "backend" },
      { regexp: { exp: "^[a-z0-9-]+\\.cluster-1\\.internal\\.example\\.com$", url: kedgeUrl }, proxy_auth: "proxy", backend_auth: "backend" },
    ],
    auth_sources: [
      { name: "proxy", token: { token: proxyToken } },
      { name: "wrong", token: { token: "not-the-proxy-token" } },
      { name: "backend", kube: { user: "svc", path: kubeconfig } },
    ],
  });
}

beforeAll(async () => {
  pki = makeTestPki();
  writeFileSync(backendTokenFile, backendToken);
  const kedgeTokenFile = join(dir, "kedge-token");
  writeFileSync(kedgeTokenFile, proxyToken);
  greeter = await startGreeter("cluster-1", undefined, { requiredAuthorization: () => `Bearer ${backendToken}` });
  kedge = await startTestKedge({
    server: {
      ...plainServer, http_tls_port: 0,
      tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile], tls_client_cert_required: true,
    },
    auth: { bearer_token_file: kedgeTokenFile },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
      // Routes by the authority the client names: a call that arrived with kedge's own name would find no route.
      routes: [
        { backend_name: "greeter", authority_host_matcher: "greeter.cluster-1.internal.example.com", authority_port_matcher: 8080 },
        ...["other", "shared", "wrong-token", "by-ip"].map((name) => ({ backend_name: "greeter", authority_host_matcher: `${name}.cluster-1.internal.example.com` })),
      ],
    },
  });
  relay = await startTcpRelay(kedge.ports.tls);
  unnamedRelay = await startTcpRelay(kedge.ports.tls, "127.0.0.2");
  kedgeClient = newClient();
});

afterAll(async () => {
  kedgeClient?.close();
  await relay?.close();
  await unnamedRelay?.close();
  await kedge?.shutdown();
  greeter?.kill();
});

const greeterUrl = "https://greeter.cluster-1.internal.example.com:8080";
const greeterTarget = "greeter.cluster-1.internal.example.com:8080";

function connectClient(kedgeClient: KedgeClient, baseUrl = greeterUrl): Record<string, any> {
  return connectGreeter(kedgeClient.grpcTransport({ baseUrl, ...greeterJson }));
}

async function grpcJsClient(kedgeClient: KedgeClient, target = greeterTarget): Promise<grpc.Client & Record<string, any>> {
  const { address, credentials, options } = await kedgeClient.grpcJs(target);
  return new GreeterClient(address, credentials, options) as any;
}

describe("Connect transport (grpcTransport)", () => {
  it("unary: reaches the backend through the mapped kedge with mTLS, the proxy token and the backend's token", async () => {
    const reply = await connectClient(kedgeClient).sayHello({ name: "kedge" });
    expect(reply.message).toBe("Hello kedge!");
    expect(reply.server).toBe("cluster-1");
    expect(reply.auth).toBe(`Bearer ${backendToken}`);
  });

  it("server streaming, client streaming and bidi", async () => {
    const client = connectClient(kedgeClient);
    expect((await collect(client.countTo({ n: 3 }))).map((m: any) => m.i)).toEqual([1, 2, 3]);
    async function* numbers() {
      yield { n: 1 };
      yield { n: 2 };
    }
    expect((await client.sum(numbers())).total).toBe(3);
    async function* texts() {
      yield { text: "a" };
      yield { text: "b" };
    }
    expect((await collect(client.chat(texts()))).map((m: any) => m.echo)).toEqual(["a", "b"]);
  });

  it("a deadline shorter than the backend's answer: DEADLINE_EXCEEDED, and the backend sees the call cancelled", async () => {
    const before = greeter.cancelled;
    const err = await connectError(connectClient(kedgeClient).sleep({ ms: 5000 }, { timeoutMs: 300 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    await until("the backend to see the cancellation", () => greeter.cancelled > before);
  });

  it("an AbortSignal cancels the call, and the backend sees it", async () => {
    const before = greeter.cancelled;
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 200);
    const err = await connectError(connectClient(kedgeClient).sleep({ ms: 5000 }, { signal: abort.signal }));
    expect(err.code).toBe(Code.Canceled);
    await until("the backend to see the cancellation", () => greeter.cancelled > before);
  });

  it("a wrong proxy token: kedge's UNAUTHENTICATED as an ordinary ConnectError", async () => {
    const err = await connectError(connectClient(kedgeClient, "https://wrong-token.cluster-1.internal.example.com:8080").sayHello({ name: "x" }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe("Verification failed. Token does not match.");
  });

  it("an unmapped host: UNAVAILABLE, caused by KedgeError unknown-host, and nothing is sent", async () => {
    const before = relay.accepted;
    const err = await connectError(connectClient(kedgeClient, "https://greeter.elsewhere.example.com").sayHello({ name: "x" }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.cause).toBeInstanceOf(KedgeError);
    expect((err.cause as KedgeError).type).toBe("unknown-host");
    expect(relay.accepted).toBe(before);
  });

  it("shares one HTTP/2 connection per kedge among all the client's transports", async () => {
    const kedgeClient = newClient();
    try {
      const before = relay.accepted;
      const a = connectClient(kedgeClient);
      const b = connectClient(kedgeClient, "https://other.cluster-1.internal.example.com");
      await Promise.all([a.sayHello({ name: "1" }), b.sayHello({ name: "2" }), collect(a.countTo({ n: 2 }))]);
      await a.sayHello({ name: "3" });
      await b.sayHello({ name: "4" });
      expect(relay.accepted - before).toBe(1);
    } finally {
      kedgeClient.close();
    }
  });

  it("close() ends the sessions: the call in flight and later calls fail, and nothing reconnects", async () => {
    const kedgeClient = newClient();
    const greeterClient = connectClient(kedgeClient);
    await greeterClient.sayHello({ name: "warm" });
    const before = { accepted: relay.accepted, cancelled: greeter.cancelled };
    const inFlight = connectError(greeterClient.sleep({ ms: 5000 }));
    await Bun.sleep(100);
    kedgeClient.close();
    expect(await inFlight).toBeInstanceOf(ConnectError);
    const later = await connectError(greeterClient.sayHello({ name: "late" }));
    expect(later.code).toBe(Code.Unavailable);
    expect(later.rawMessage).toBe("the kedge client is closed");
    await until("the backend to see the call in flight cancelled", () => greeter.cancelled > before.cancelled);
    expect(relay.accepted).toBe(before.accepted);
  });
});

describe("grpc-js (grpcJs)", () => {
  it("gives the kedge's address, TLS credentials with call credentials, and the destination as default authority", async () => {
    const { address, credentials, options } = await kedgeClient.grpcJs(greeterTarget);
    expect(address).toBe(`localhost:${relay.port}`);
    expect(credentials).toBeInstanceOf(grpc.ChannelCredentials);
    expect(options["grpc.default_authority"]).toBe(greeterTarget);
    expect((await kedgeClient.grpcJs(`dns:///${greeterTarget}`)).options["grpc.default_authority"]).toBe(greeterTarget);
  });

  it("unary: reaches the backend with the route's credentials added per call", async () => {
    const client = await grpcJsClient(kedgeClient);
    const r = await unary(client, "sayHello", { name: "kedge" });
    client.close();
    expect(r.error).toBeUndefined();
    expect(r.response.message).toBe("Hello kedge!");
    expect(r.response.auth).toBe(`Bearer ${backendToken}`);
  });

  it("server streaming, client streaming and bidi", async () => {
    const client = await grpcJsClient(kedgeClient);
    const counted = await new Promise<number[]>((resolve, reject) => {
      const got: number[] = [];
      const call = client.countTo({ n: 3 });
      call.on("data", (m: { i: number }) => got.push(m.i));
      call.on("error", reject);
      call.on("end", () => resolve(got));
    });
    expect(counted).toEqual([1, 2, 3]);
    const total = await new Promise<number>((resolve, reject) => {
      const call = client.sum((err: Error | null, r: { total: number }) => (err ? reject(err) : resolve(r.total)));
      call.write({ n: 1 });
      call.write({ n: 2 });
      call.end();
    });
    expect(total).toBe(3);
    const { chat, echoes, ended } = openChat(client);
    chat.write({ text: "a" });
    chat.write({ text: "b" });
    chat.end();
    expect(await ended).toBeUndefined();
    expect(echoes.map((m) => m.echo)).toEqual(["a", "b"]);
    client.close();
  });

  it("a deadline shorter than the backend's answer: DEADLINE_EXCEEDED, and the backend sees the call cancelled", async () => {
    const client = await grpcJsClient(kedgeClient);
    const before = greeter.cancelled;
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.sleep({ ms: 5000 }, new grpc.Metadata(), { deadline: Date.now() + 300 }, (e: grpc.ServiceError) => resolve(e)),
    );
    expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await until("the backend to see the cancellation", () => greeter.cancelled > before);
    client.close();
  });

  it("call.cancel() cancels the call, and the backend sees it", async () => {
    const client = await grpcJsClient(kedgeClient);
    const before = greeter.cancelled;
    let call: grpc.ClientUnaryCall | undefined;
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      call = client.sleep({ ms: 5000 }, (e: grpc.ServiceError) => resolve(e));
      setTimeout(() => call!.cancel(), 300);
    });
    expect(err?.code).toBe(grpc.status.CANCELLED);
    await until("the backend to see the cancellation", () => greeter.cancelled > before);
    client.close();
  });

  it("a wrong proxy token: kedge's UNAUTHENTICATED", async () => {
    const client = await grpcJsClient(kedgeClient, "wrong-token.cluster-1.internal.example.com:8080");
    const r = await unary(client, "sayHello", { name: "x" });
    client.close();
    expect(r.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(r.error?.details).toBe("Verification failed. Token does not match.");
  });

  it("an unmapped target: rejects at once with KedgeError unknown-host (no channel can be made)", async () => {
    const err = await kedgeClient.grpcJs("greeter.elsewhere.example.com:443").catch((e) => e);
    expect(err).toBeInstanceOf(KedgeError);
    expect(err.type).toBe("unknown-host");
  });

  it("a target grpc-js would not read as host:port: rejects with KedgeError bad-request", async () => {
    const err = await kedgeClient.grpcJs("unix:/run/greeter.sock").catch((e) => e);
    expect(err).toBeInstanceOf(KedgeError);
    expect(err.type).toBe("bad-request");
  });

  it("clients made from the same target share one connection to the kedge", async () => {
    const before = relay.accepted;
    const target = "shared.cluster-1.internal.example.com:8080";
    const [a, b] = [await grpcJsClient(kedgeClient, target), await grpcJsClient(kedgeClient, target)];
    for (const client of [a, b, a, b]) expect((await unary(client, "sayHello", { name: "x" })).error).toBeUndefined();
    a.close();
    b.close();
    expect(relay.accepted - before).toBe(1);
  });
});

describe("a kedge named by its IP address", () => {
  it("is reached with its certificate checked against the IP, through Connect and grpc-js", async () => {
    expect((await connectClient(kedgeClient, "https://by-ip.cluster-1.internal.example.com").sayHello({ name: "ip" })).message).toBe("Hello ip!");
    const js = await grpcJsClient(kedgeClient, "by-ip.cluster-1.internal.example.com:443");
    const r = await unary(js, "sayHello", { name: "ip" });
    js.close();
    expect(r.error?.details).toBeUndefined();
    expect(r.response?.message).toBe("Hello ip!");
  });

  it("is refused when its certificate does not name that IP", async () => {
    const host = "by-unnamed-ip.cluster-1.internal.example.com";
    const err = await connectError(connectClient(kedgeClient, `https://${host}`).sayHello({ name: "ip" }));
    // connect-node calls a failed TLS check INTERNAL; the message says why.
    expect(err.rawMessage).toContain("IP: 127.0.0.2 is not in the cert's list");
    const js = await grpcJsClient(kedgeClient, `${host}:443`);
    const r = await unary(js, "sayHello", { name: "ip" });
    js.close();
    expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.error?.details).toContain("127.0.0.2");
  });
});

describe("the route's credentials", () => {
  it("replace the caller's own authorization, through Connect and grpc-js", async () => {
    const own = "Bearer the-callers-own";
    expect((await connectClient(kedgeClient).sayHello({ name: "x" }, { headers: { authorization: own } })).auth).toBe(`Bearer ${backendToken}`);
    const js = await grpcJsClient(kedgeClient);
    const metadata = new grpc.Metadata();
    metadata.set("authorization", own);
    const r = await unary(js, "sayHello", { name: "x" }, metadata);
    js.close();
    expect(r.response?.auth).toBe(`Bearer ${backendToken}`);
  });

  it("are fetched for every call: a token file rewritten between calls is used by the next Connect and grpc-js calls", async () => {
    const connect = connectClient(kedgeClient);
    const js = await grpcJsClient(kedgeClient);
    expect((await connect.sayHello({ name: "a" })).auth).toBe(`Bearer ${backendToken}`);
    backendToken = "backend-token-number-two";
    writeFileSync(backendTokenFile, backendToken);
    expect((await connect.sayHello({ name: "b" })).auth).toBe(`Bearer ${backendToken}`);
    const r = await unary(js, "sayHello", { name: "c" });
    js.close();
    expect(r.response?.auth).toBe(`Bearer ${backendToken}`);
  });

  it("that cannot be had fail the call with UNAVAILABLE naming the auth source", async () => {
    const connect = connectClient(kedgeClient);
    const js = await grpcJsClient(kedgeClient);
    rmSync(backendTokenFile);
    try {
      const err = await connectError(connect.sayHello({ name: "x" }));
      expect(err.code).toBe(Code.Unavailable);
      expect((err.cause as KedgeError).type).toBe("auth-source");
      const r = await unary(js, "sayHello", { name: "x" });
      expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(r.error?.details).toContain('auth source "backend"');
    } finally {
      js.close();
      writeFileSync(backendTokenFile, backendToken);
    }
  });
});
