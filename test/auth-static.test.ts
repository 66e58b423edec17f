import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// kedge Go's static bearer token (--unsafe_bearer_token_proxy_auth), here from a file so it stays
// out of the config, re-read on reload; and the rule that no token ever reaches a log line.

const firstToken = "s3cret-token-0123456789abcdef";
const secondToken = "rotated-token-fedcba9876543210";
let tokenFile: string;
let upstream: Upstream;
let greeter: GreeterServer;
let kedge: TestKedge;
const logged: string[] = [];
const realWrite = process.stderr.write.bind(process.stderr);

beforeAll(async () => {
  tokenFile = join(mkdtempSync(join(tmpdir(), "kedge-token-")), "token");
  writeFileSync(tokenFile, `${firstToken}\n`);
  upstream = await startUpstream("app");
  greeter = await startGreeter("greeter");
  // Every line kedge logs, at debug level, is kept to look for secrets.
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    logged.push(String(chunk));
    return realWrite(chunk as never, ...(rest as []));
  }) as typeof process.stderr.write;
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0, log_level: "debug" },
    auth: { bearer_token_file: tokenFile, admin: { enabled: true, protect_metrics: true } },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
    grpc: { backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }], routes: [{ backend_name: "greeter" }] },
  });
});

afterAll(async () => {
  process.stderr.write = realWrite;
  await kedge?.shutdown();
  await upstream?.close();
  greeter?.kill();
});

const get = (authorization?: string) => curl([...(authorization ? ["-H", `proxy-authorization: ${authorization}`] : []), kedge.url("/x")]);

describe("static bearer token", () => {
  it("lets the token through (any case of 'Bearer') and strips it before the backend", async () => {
    for (const scheme of ["Bearer", "bearer"]) {
      const r = await get(`${scheme} ${firstToken}`);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).headers["proxy-authorization"]).toBeUndefined();
    }
  });

  it("refuses a wrong token of the same length, a prefix and an empty one with 401", async () => {
    for (const wrong of [firstToken.replace("s3", "s4"), firstToken.slice(0, 10), ""]) {
      const r = await get(`Bearer ${wrong}`);
      expect(r.status).toBe(401);
      expect(r.headers["x-kedge-error-type"]).toBe("unauthorized");
    }
    expect((await get(`Bearer ${firstToken}x`)).headers["x-kedge-error"]).toBe("Verification failed. Token does not match.");
  });

  it("accepts the token as gRPC proxy-authorization metadata", async () => {
    const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set("proxy-authorization", `bearer ${firstToken}`);
    expect((await unary(client, "sayHello", { name: "x" }, md)).response?.message).toBe("Hello x!");
    const wrong = new grpc.Metadata();
    wrong.set("proxy-authorization", "bearer nope");
    const denied = await unary(client, "sayHello", { name: "x" }, wrong);
    client.close();
    expect(denied.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(denied.error?.details).toBe("Verification failed. Token does not match.");
  });

  it("re-reads the token file on reload: the old token stops working", async () => {
    writeFileSync(tokenFile, secondToken);
    expect(await kedge.reload()).toBeUndefined();
    expect((await get(`Bearer ${firstToken}`)).status).toBe(401);
    expect((await get(`Bearer ${secondToken}`)).status).toBe(200);
  });

  it("guards /metrics on the admin port when asked, and keeps /_healthz open", async () => {
    const admin = (path: string, headers: string[] = []) => curl([...headers, `http://127.0.0.1:${kedge.ports.admin}${path}`]);
    expect((await admin("/metrics")).status).toBe(401);
    expect((await admin("/metrics", ["-H", `authorization: Bearer ${secondToken}`])).status).toBe(200);
    expect((await admin("/_healthz")).status).toBe(200);
  });

  it("never writes a token to the log", () => {
    const all = logged.join("");
    expect(all.length).toBeGreaterThan(0);
    for (const secret of [firstToken, secondToken]) expect(all).not.toContain(secret);
  });
});
