import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { GreeterClient, openChat, startGreeter, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { until } from "./helpers/wait.ts";

// Issue 4's end-to-end matrix: every call kind × every way a call can end, through kedge over TLS.

type Kind = "unary" | "server-stream" | "client-stream" | "bidi";
type Mode = "ok" | "fail" | "hang";
const kinds: Kind[] = ["unary", "server-stream", "client-stream", "bidi"];

interface Outcome {
  messages: any[];
  error?: grpc.ServiceError;
  headers?: grpc.Metadata;
}

interface Started {
  cancel(): void;
  done: Promise<Outcome>;
}

let pki: TestPki;
let main: GreeterServer;
let other: GreeterServer;
const doomed = new Map<Kind, GreeterServer>();
let kedge: TestKedge;

function clientFor(authority: string): grpc.Client {
  return new GreeterClient(`127.0.0.1:${kedge.ports.tls}`, grpc.credentials.createSsl(Buffer.from(pki.ca)), {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": authority,
  });
}

/** Starts one call of a kind; `mode` tells the greeter to answer, fail with trailers, or hang. */
function start(client: grpc.Client, kind: Kind, mode: Mode, deadlineMs = 10_000): Started {
  const c = client as any;
  const messages: unknown[] = [];
  const options = { deadline: Date.now() + deadlineMs };
  const md = new grpc.Metadata();
  let headers: grpc.Metadata | undefined;
  let call: any;
  const done = new Promise<Outcome>((resolve) => {
    const finish = (error: grpc.ServiceError | null, response?: unknown) => {
      if (response !== undefined) messages.push(response);
      resolve({ messages, error: error ?? undefined, headers });
    };
    const then = mode === "ok" ? undefined : mode;
    if (kind === "unary") call = c.sayHello({ name: mode === "ok" ? "matrix" : mode }, md, options, finish);
    if (kind === "client-stream") {
      call = c.sum(md, options, finish);
      call.write({ n: 1 });
      call.write({ n: 2, then });
      call.end();
    }
    if (kind === "server-stream" || kind === "bidi") {
      call = kind === "bidi" ? c.chat(md, options) : c.countTo({ n: 3, then }, md, options);
      call.on("data", (m: unknown) => messages.push(m));
      call.on("error", (e: grpc.ServiceError) => finish(e));
      call.on("end", () => finish(null));
      if (kind === "bidi") {
        call.write({ text: "a" });
        call.write({ text: mode === "ok" ? "b" : mode });
        call.end();
      }
    }
    call.on("metadata", (m: grpc.Metadata) => (headers = m));
  });
  return { cancel: () => call.cancel(), done };
}


const expectedMessages: Record<Kind, unknown[]> = {
  unary: [expect.objectContaining({ message: "Hello matrix!" })],
  "server-stream": [1, 2, 3].map((i) => ({ i, server: "main" })),
  "client-stream": [{ total: 3, server: "main" }],
  bidi: [{ echo: "a", server: "main" }, { echo: "b", server: "main" }],
};

beforeAll(async () => {
  pki = makeTestPki();
  [main, other] = await Promise.all([startGreeter("main"), startGreeter("other")]);
  for (const kind of kinds) doomed.set(kind, await startGreeter(`doomed-${kind}`));
  kedge = await startTestKedge({
    server: { ...plainServer, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    grpc: {
      backends: [
        { name: "main", static: { addresses: [`127.0.0.1:${main.port}`] } },
        { name: "moving", static: { addresses: [`127.0.0.1:${main.port}`] } },
        { name: "down", static: { addresses: ["127.0.0.1:1"] } },
        ...kinds.map((k) => ({ name: `doomed_${k}`, static: { addresses: [`127.0.0.1:${doomed.get(k)!.port}`] } })),
      ],
      routes: [
        { backend_name: "main", authority_host_matcher: "main.test" },
        { backend_name: "moving", authority_host_matcher: "moving.test" },
        { backend_name: "down", authority_host_matcher: "down.test" },
        ...kinds.map((k) => ({ backend_name: `doomed_${k}`, authority_host_matcher: `doomed-${k}.test` })),
      ],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  for (const g of [main, other, ...doomed.values()]) g?.kill();
});

for (const kind of kinds) {
  describe(`${kind} call`, () => {
    it("succeeds, with x-kedge-backend-name in the response headers", async () => {
      const client = clientFor("main.test");
      const r = await start(client, kind, "ok").done;
      client.close();
      expect(r.error).toBeUndefined();
      expect(r.messages).toEqual(expectedMessages[kind]);
      expect(r.headers?.get("x-kedge-backend-name")).toEqual(["main"]);
    });

    it("passes an application error with its trailers through", async () => {
      const client = clientFor("main.test");
      const r = await start(client, kind, "fail").done;
      client.close();
      expect(r.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(r.error?.details).toBe("greeting refused");
      expect(r.error?.metadata.get("x-detail")).toEqual(["because"]);
      expect(r.error?.metadata.get("x-detail-bin")).toEqual([Buffer.from([1, 2, 3])]);
      if (kind === "server-stream") expect(r.messages).toHaveLength(3); // messages before the error arrive
    });

    it("ends with DEADLINE_EXCEEDED and cancels the backend's call", async () => {
      const client = clientFor("main.test");
      const before = main.cancelled;
      const r = await start(client, kind, "hang", 300).done;
      client.close();
      expect(r.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      await until("the backend to see the cancellation", () => main.cancelled > before);
    });

    it("propagates the client's cancellation to the backend", async () => {
      const client = clientFor("main.test");
      const before = main.cancelled;
      const call = start(client, kind, "hang");
      await Bun.sleep(200);
      call.cancel();
      const r = await call.done;
      client.close();
      expect(r.error?.code).toBe(grpc.status.CANCELLED);
      await until("the backend to see the cancellation", () => main.cancelled > before);
    });

    it("answers UNAVAILABLE when the backend is down", async () => {
      const client = clientFor("down.test");
      const r = await start(client, kind, "ok").done;
      client.close();
      expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
    });

    it("ends with UNAVAILABLE or INTERNAL when the backend is killed mid-call", async () => {
      const client = clientFor(`doomed-${kind}.test`);
      const call = start(client, kind, "hang");
      await Bun.sleep(200);
      doomed.get(kind)!.kill();
      const r = await call.done;
      client.close();
      expect([grpc.status.UNAVAILABLE, grpc.status.INTERNAL]).toContain(r.error?.code as number);
    });
  });
}

describe("endpoint changes", () => {
  it("moves new calls to the new endpoints while a stream on the old one finishes there", async () => {
    const client = clientFor("moving.test");
    const { chat, echoes, ended } = openChat(client);
    chat.write({ text: "before" });
    await until("the first echo", () => echoes.length === 1);

    const config = JSON.parse(await Bun.file(kedge.configFile).text());
    config.grpc.backends.find((b: { name: string }) => b.name === "moving").static.addresses = [`127.0.0.1:${other.port}`];
    kedge.writeConfig(config);
    expect(await kedge.reload()).toBeUndefined();

    const fresh = await start(clientFor("moving.test"), "unary", "ok").done;
    expect(fresh.messages[0].server).toBe("other");
    chat.write({ text: "after" });
    chat.end();
    expect(await ended).toBeUndefined();
    expect(echoes).toEqual([{ echo: "before", server: "main" }, { echo: "after", server: "main" }]);
    client.close();
  });
});
