import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import tls from "node:tls";
import { createKedgeClient, KedgeError, type KedgeClient } from "../src/client/index.ts";
import { issueClientCert } from "./helpers/certs.ts";
import { startTwoClusters, type TwoClusters } from "./helpers/two-clusters.ts";
import { json, startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// kedge/client's fetch against two real kedges (test/helpers/two-clusters.ts): cluster-1 wants the
// client certificate, cluster-2 an OIDC id_token the client refreshes at oidc-provider; one client
// object reaches both.

let clusters: TwoClusters;
let client: KedgeClient;
let direct: Upstream;

beforeAll(async () => {
  clusters = await startTwoClusters();
  direct = await startUpstream("direct");
  client = createKedgeClient(clusters.options());
});

afterAll(async () => {
  client?.close();
  await direct?.close();
  await clusters?.stop();
});

const url = (host: string, path = "/") => `http://${host}${path}`;

/** What a promise rejects with (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<any> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

async function activeConnections(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return Number(/^kedge_active_connections (\d+)/m.exec(text)?.[1]);
}

describe("client.fetch to two clusters through one client", () => {
  it("reaches cluster-1 with its client certificate and the route's backend_auth", async () => {
    const res = await client.fetch(url(clusters.hosts.http1, "/hello?x=1"));
    expect(res.status).toBe(200);
    expect(res.url).toBe(url(clusters.hosts.http1, "/hello?x=1"));
    const seen = await json(res);
    expect(seen).toMatchObject({ upstream: "cluster-1", method: "GET", url: "/hello?x=1" });
    expect(seen.headers.authorization).toBe("Bearer first-backend-token");
    expect(seen.headers.host).toBe(clusters.hosts.http1);
  });

  it("reaches cluster-2 with an id_token refreshed at the OIDC provider, which stops at kedge", async () => {
    const res = await client.fetch(new URL(url(clusters.hosts.http2, "/two")));
    expect(res.status).toBe(200);
    const seen = await json(res);
    expect(seen).toMatchObject({ upstream: "cluster-2", url: "/two" });
    expect(seen.headers["proxy-authorization"]).toBeUndefined();
    expect(clusters.cluster2.issuer.grants).toContain("refresh_token");
  });

  it("sends the target as an absolute-form request: the port reaches kedge and the backend's Host", async () => {
    const res = await client.fetch(url(`${clusters.hosts.http1}:8080`, "/port"));
    expect(res.status).toBe(200);
    expect((await json(res)).headers.host).toBe(`${clusters.hosts.http1}:8080`);
  });

  it("sends a body of known length with its content-length", async () => {
    const seen = await json(await client.fetch(url(clusters.hosts.http2, "/form"), { method: "PUT", body: "a=1&b=2" }));
    expect(seen).toMatchObject({ method: "PUT", bodyBytes: 7 });
    expect(seen.headers["content-length"]).toBe("7");
  });

  it("takes a Request with the caller's headers, its body streamed", async () => {
    const req = new Request(url(clusters.hosts.http2, "/request"), { method: "POST", headers: { "x-caller": "yes" }, body: "from a Request" });
    const seen = await json(await client.fetch(req));
    expect(seen).toMatchObject({ method: "POST", url: "/request", bodyBytes: 14 });
    expect(seen.headers["x-caller"]).toBe("yes");
  });

  it("streams a request body and the response body back", async () => {
    const chunks = ["one,", "two,", "three"];
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = chunks.shift();
        if (next === undefined) return controller.close();
        await Bun.sleep(20);
        controller.enqueue(new TextEncoder().encode(next));
      },
    });
    const res = await client.fetch(url(clusters.hosts.http1, "/echo"), { method: "POST", body, duplex: "half" } as RequestInit);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-upstream")).toBe("cluster-1");
    expect(await res.text()).toBe("one,two,three");
  });

  it("streams a large response as it arrives", async () => {
    const res = await client.fetch(url(clusters.hosts.http2, "/big?bytes=3000000"));
    let total = 0;
    for await (const chunk of res.body!) total += chunk.byteLength;
    expect(total).toBe(3_000_000);
  });

  it("gives a backend's own 404 and 500 as ordinary responses", async () => {
    const notFound = await client.fetch(url(clusters.hosts.http1, "/status/404"));
    expect(notFound.status).toBe(404);
    expect(await notFound.text()).toBe("status 404\n");
    const failed = await client.fetch(url(clusters.hosts.http2, "/status/500"));
    expect(failed.status).toBe(500);
    expect(failed.headers.get("x-upstream")).toBe("cluster-2");
  });

  it("gives HEAD and 204 responses without a body", async () => {
    const head = await client.fetch(url(clusters.hosts.http1, "/"), { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.body).toBeNull();
    const empty = await client.fetch(url(clusters.hosts.http1, "/status/204"));
    expect(empty.status).toBe(204);
    expect(await empty.text()).toBe("");
  });
});

describe("redirects", () => {
  const redirect = (to: string, status = 302) => url(clusters.hosts.http1, `/redirect?status=${status}&to=${encodeURIComponent(to)}`);

  it("are followed by default, each hop routed on its own: cluster-1 sends the client to cluster-2", async () => {
    const landing = url(clusters.hosts.http2, "/landed");
    const res = await client.fetch(redirect(landing), { headers: { authorization: "Bearer the-callers-own" } });
    expect(res.status).toBe(200);
    expect(res.redirected).toBe(true);
    expect(res.url).toBe(landing);
    const seen = await json(res);
    expect(seen).toMatchObject({ upstream: "cluster-2", url: "/landed" });
    expect(seen.headers.authorization).toBeUndefined(); // the caller's credential stays with its origin
  });

  it("turn a POST into a GET on 303, and keep a known-length body on 307", async () => {
    const seeOther = await json(await client.fetch(redirect("/after-post", 303), { method: "POST", body: "form" }));
    expect(seeOther).toMatchObject({ method: "GET", url: "/after-post", bodyBytes: 0 });
    const temporary = await json(await client.fetch(redirect("/again", 307), { method: "PUT", body: "resent" }));
    expect(temporary).toMatchObject({ method: "PUT", url: "/again", bodyBytes: 6 });
  });

  it("cannot resend a streamed body on 307: TypeError", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("once"));
        c.close();
      },
    });
    const err = await rejection(client.fetch(redirect("/again", 307), { method: "POST", body, duplex: "half" } as RequestInit));
    expect(err).toBeInstanceOf(TypeError);
  });

  it("are answers with redirect manual, and TypeErrors with redirect error", async () => {
    const manual = await client.fetch(redirect("/elsewhere"), { redirect: "manual" });
    expect(manual.status).toBe(302);
    expect(manual.headers.get("location")).toBe("/elsewhere");
    expect(manual.redirected).toBe(false);
    expect(await rejection(client.fetch(redirect("/elsewhere"), { redirect: "error" }))).toBeInstanceOf(TypeError);
  });
});

describe("kedge's refusals as KedgeError", () => {
  it("a host kedge has no route for: no-route with kedge's status and message", async () => {
    const err = await rejection(client.fetch(url("nothing.cluster-1.internal.example.com")));
    expect(err).toBeInstanceOf(KedgeError);
    expect(err).toMatchObject({ type: "no-route", status: 502 });
    expect(err.message).toContain("unknown route");
  });

  it("a bad token at cluster-2: unauthorized, 401", async () => {
    const options = clusters.options();
    const bad = createKedgeClient({ ...options, auth_sources: [...options.auth_sources!.slice(0, 1), { name: "sso-cluster-2", token: { token: "not-a-jwt" } }] });
    try {
      const err = await rejection(bad.fetch(url(clusters.hosts.http2)));
      expect(err).toBeInstanceOf(KedgeError);
      expect(err).toMatchObject({ type: "unauthorized", status: 401 });
    } finally {
      bad.close();
    }
  });

  it("a certificate of another subject at cluster-1: forbidden, 403", async () => {
    const mallory = issueClientCert(clusters.pki, "mallory", "/CN=mallory");
    const other = createKedgeClient(clusters.options({ tls: { ca_files: [clusters.pki.caFile], client_cert_file: mallory.certFile, client_key_file: mallory.keyFile } }));
    try {
      const err = await rejection(other.fetch(url(clusters.hosts.http1)));
      expect(err).toBeInstanceOf(KedgeError);
      expect(err).toMatchObject({ type: "forbidden", status: 403 });
      expect(err.message).toContain("CN=mallory");
    } finally {
      other.close();
    }
  });

  it("no certificate at cluster-1: the TLS handshake fails, a TypeError as fetch gives for network failures", async () => {
    const anonymous = createKedgeClient(clusters.options({ tls: { ca_files: [clusters.pki.caFile] } }));
    try {
      const err = await rejection(anonymous.fetch(url(clusters.hosts.http1)));
      expect(err).toBeInstanceOf(TypeError);
      expect(err.cause).toBeDefined();
    } finally {
      anonymous.close();
    }
  });

  it("an auth source that cannot give a credential: auth-source, before any request is sent", async () => {
    const options = clusters.options();
    const neverLoggedIn = { ...clusters.cluster2.oidcSource, oidc: { ...clusters.cluster2.oidcSource.oidc, path: `${clusters.dir}/no-such-cache.json` } };
    const broken = createKedgeClient({ ...options, auth_sources: [...options.auth_sources!.slice(0, 1), neverLoggedIn] });
    try {
      const before = clusters.cluster2.http.seen.length;
      const err = await rejection(broken.fetch(url(clusters.hosts.http2)));
      expect(err).toBeInstanceOf(KedgeError);
      expect(err).toMatchObject({ type: "auth-source", status: 502 });
      expect(err.message).toStartWith('auth source "sso-cluster-2": ');
      expect(clusters.cluster2.http.seen.length).toBe(before);
    } finally {
      broken.close();
    }
  });
});

describe("hosts no route maps", () => {
  it("go to the platform's fetch by default (DIRECT)", async () => {
    const res = await client.fetch(`http://localhost:${direct.port}/plain`);
    expect(res.status).toBe(200);
    expect(await json(res)).toMatchObject({ upstream: "direct", url: "/plain" });
  });

  it("are refused with unknown-host when unknown_hosts is REFUSE", async () => {
    const refusing = createKedgeClient(clusters.options({ unknown_hosts: "REFUSE" }));
    try {
      const err = await rejection(refusing.fetch(`http://localhost:${direct.port}/plain`));
      expect(err).toBeInstanceOf(KedgeError);
      expect(err).toMatchObject({ type: "unknown-host", status: 502 });
    } finally {
      refusing.close();
    }
  });
});

describe("abort", () => {
  it("an already aborted signal rejects with its reason and sends nothing", async () => {
    const before = clusters.cluster1.http.seen.length;
    const err = await rejection(client.fetch(url(clusters.hosts.http1, "/never"), { signal: AbortSignal.abort() }));
    expect(err.name).toBe("AbortError");
    await Bun.sleep(50);
    expect(clusters.cluster1.http.seen.length).toBe(before);
  });

  it("while waiting for the response head", async () => {
    const controller = new AbortController();
    const pending = client.fetch(url(clusters.hosts.http2, "/hang"), { signal: controller.signal });
    await until("the backend to get the request", () => clusters.cluster2.http.seen.some((s) => s.url === "/hang"));
    controller.abort();
    expect((await rejection(pending)).name).toBe("AbortError");
  });

  it("mid-body: the body errors with the abort's reason", async () => {
    const controller = new AbortController();
    const res = await client.fetch(url(clusters.hosts.http1, "/slow-chunks?n=50&ms=100"), { signal: controller.signal });
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe("chunk 0\n");
    controller.abort();
    expect((await rejection(reader.read())).name).toBe("AbortError");
  });

  it("while streaming the request body", async () => {
    const controller = new AbortController();
    let cancelled: unknown;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("part"));
      },
      cancel(reason) {
        cancelled = reason;
      },
    });
    const pending = client.fetch(url(clusters.hosts.http2, "/echo"), { method: "POST", body, duplex: "half", signal: controller.signal } as RequestInit);
    await Bun.sleep(100);
    controller.abort();
    expect((await rejection(pending.then((r) => r.text()))).name).toBe("AbortError");
    await until("the request body to be cancelled", () => cancelled !== undefined);
  });
});

describe("connections and credentials", () => {
  it("reuses one TLS connection per kedge for requests in sequence", async () => {
    const fresh = createKedgeClient(clusters.options());
    try {
      expect((await fresh.fetch(url(clusters.hosts.http1, "/reuse/first"))).status).toBe(200);
      const open = await activeConnections(clusters.cluster1.adminPort);
      expect(open).toBeGreaterThanOrEqual(1);
      for (let i = 0; i < 5; i++) expect(await json(await fresh.fetch(url(clusters.hosts.http1, `/reuse/${i}`)))).toMatchObject({ url: `/reuse/${i}` });
      expect(await activeConnections(clusters.cluster1.adminPort)).toBe(open);
    } finally {
      // Bun's node:http client keeps its connections in Bun's own pool, which no Agent can close;
      // test/client-package.test.ts checks that close() ends them under Node.
      fresh.close();
    }
  });

  it("re-reads a rotated token file on the next request, without a new client", async () => {
    writeFileSync(clusters.tokenFile, "second-backend-token-rotated\n");
    const seen = await json(await client.fetch(url(clusters.hosts.http1, "/rotated")));
    expect(seen.headers.authorization).toBe("Bearer second-backend-token-rotated");
  });
});

describe("a kept-alive connection kedge closed just as it is reused", () => {
  it("is retried once on a new connection, and the caller sees the answer", async () => {
    const { pki } = clusters;
    // A TLS listener answering each connection's first request only; a second one on the same
    // connection finds it closed, as when kedge's idle timeout and the reuse cross.
    const requests = { total: 0, connections: 0 };
    const server = tls.createServer({ cert: pki.serverCert, key: pki.serverKey }, (socket) => {
      requests.connections++;
      let served = 0;
      socket.on("data", () => {
        requests.total++;
        if (served++ > 0) return void socket.destroy();
        socket.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok");
      });
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const flaky = createKedgeClient({ routes: [{ direct: { key: "flaky.internal.example.com", url: `https://localhost:${port}` } }], tls: { ca_files: [pki.caFile] } });
    try {
      for (const path of ["/one", "/two", "/three"]) {
        const res = await flaky.fetch(`http://flaky.internal.example.com${path}`);
        expect(await res.text()).toBe("ok");
      }
      expect(requests.connections).toBe(3);
    } finally {
      flaky.close();
      server.close();
    }
  });
});
