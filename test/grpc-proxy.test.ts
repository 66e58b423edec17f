import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";

let pki: TestPki;
let greeters: GreeterServer[];
let kedge: TestKedge;
let client: grpc.Client;

beforeAll(async () => {
  pki = makeTestPki();
  greeters = await Promise.all(["g1", "g2", "g3"].map((n) => startGreeter(n)));
  kedge = await startTestKedge({
    server: { ...plainServer, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    grpc: {
      backends: [
        { name: "greeters", static: { addresses: greeters.map((g) => `127.0.0.1:${g.port}`) } },
        { name: "one", static: { addresses: [`127.0.0.1:${greeters[0].port}`] } },
        { name: "down", static: { addresses: ["127.0.0.1:1"] } },
      ],
      routes: [
        { backend_name: "down", authority_host_matcher: "down.test" },
        { backend_name: "one", service_name_matcher: "e2e.helloworld.Greeter/Sum" },
        { backend_name: "one", metadata_matcher: { "x-pin": "one" } },
        { backend_name: "greeters", service_name_matcher: "e2e.helloworld.Greeter", authority_host_matcher: "localhost" },
      ],
    },
  });
  client = new GreeterClient(`localhost:${kedge.ports.tls}`, grpc.credentials.createSsl(Buffer.from(pki.ca)));
});

afterAll(async () => {
  client.close();
  await kedge.shutdown();
  await Promise.all(greeters.map((g) => g.close()));
});

/** A SayHello with another :authority, over TLS verified for localhost. */
async function callWithAuthority(authority: string) {
  const other = new GreeterClient(`127.0.0.1:${kedge.ports.tls}`, grpc.credentials.createSsl(Buffer.from(pki.ca)), {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": authority,
  });
  const r = await unary(other, "sayHello", { name: "x" });
  other.close();
  return r;
}

describe("grpc proxying", () => {
  it("proxies a unary call over TLS and names the backend in the response headers", async () => {
    const r = await unary(client, "sayHello", { name: "kedge" });
    expect(r.error).toBeUndefined();
    expect(r.response.message).toBe("Hello kedge!");
    expect(r.headers?.get("x-kedge-backend-name")).toEqual(["greeters"]);
  });

  it("balances calls round robin across endpoints", async () => {
    const servers: string[] = [];
    for (let i = 0; i < 9; i++) servers.push((await unary(client, "sayHello", { name: "rr" })).response.server);
    expect(servers.filter((s) => s === "g1").length).toBe(3);
    expect(new Set(servers)).toEqual(new Set(["g1", "g2", "g3"]));
  });

  it("passes an application error with its trailers through, binary ones included", async () => {
    const r = await unary(client, "sayHello", { name: "fail" });
    expect(r.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(r.error?.details).toBe("greeting refused");
    expect(r.error?.metadata.get("x-detail")).toEqual(["because"]);
    expect(r.error?.metadata.get("x-detail-bin")).toEqual([Buffer.from([1, 2, 3])]);
  });

  it("streams server → client", async () => {
    const call = (client as any).countTo({ n: 50 });
    const seen: number[] = [];
    await new Promise<void>((resolve, reject) => {
      call.on("data", (m: { i: number }) => seen.push(m.i));
      call.on("end", resolve);
      call.on("error", reject);
    });
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  });

  it("streams client → server and routes by exact method", async () => {
    const result = await new Promise<any>((resolve, reject) => {
      const call = (client as any).sum((err: Error | null, res: unknown) => (err ? reject(err) : resolve(res)));
      for (let i = 1; i <= 100; i++) call.write({ n: i });
      call.end();
    });
    expect(result).toEqual({ total: 5050, server: "g1" });
  });

  it("streams both ways", async () => {
    const call = (client as any).chat();
    const echoes: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on("data", (m: { echo: string }) => {
        echoes.push(m.echo);
        if (echoes.length < 20) call.write({ text: `m${echoes.length}` });
        else call.end();
      });
      call.on("end", resolve);
      call.on("error", reject);
    });
    call.write({ text: "m0" });
    await done;
    expect(echoes).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
  });

  it("routes by metadata", async () => {
    const md = new grpc.Metadata();
    md.set("x-pin", "one");
    for (let i = 0; i < 3; i++) expect((await unary(client, "sayHello", { name: "pinned" }, md)).response.server).toBe("g1");
  });

  it("answers UNIMPLEMENTED for a call no route matches", async () => {
    const r = await callWithAuthority("nowhere.test");
    expect(r.error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(r.error?.details).toBe("unknown route to service");
  });

  it("answers UNAVAILABLE, not a hang, when the backend is down", async () => {
    const r = await callWithAuthority("down.test");
    expect(r.error?.code).toBe(grpc.status.UNAVAILABLE); // a hang would end in DEADLINE_EXCEEDED
    expect(r.error?.details).toContain("down");
  });
});
