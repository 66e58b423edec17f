import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { KedgeRouting, loadClientConfig } from "../src/client/routing.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, unary } from "./helpers/grpc.ts";
import { startTwoClusters, type TwoClusters } from "./helpers/two-clusters.ts";

// The two-cluster fixture the client library's tests stand on, checked with clients that owe
// nothing to the library: curl with each kedge as its HTTPS proxy, and grpc-js.

let clusters: TwoClusters;

beforeAll(async () => {
  clusters = await startTwoClusters();
});

afterAll(async () => {
  await clusters?.stop();
});

const cachedIdToken = () => JSON.parse(readFileSync(clusters.cluster2.oidcCacheFile, "utf8")).id_token as string;

function viaKedge(url: string, extra: string[] = []) {
  const { pki } = clusters;
  return curl(["--proxy", url, "--proxy-cacert", pki.caFile, ...extra]);
}

describe("two clusters", () => {
  it("cluster-1 proxies for a client with the test client certificate", async () => {
    const c1 = clusters.cluster1;
    const r = await viaKedge(c1.url, ["--proxy-cert", c1.clientCertFile, "--proxy-key", c1.clientKeyFile, `http://${clusters.hosts.http1}/hello`]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ upstream: "cluster-1", url: "/hello" });
  });

  it("cluster-1 refuses a client without a certificate in the TLS handshake", async () => {
    const r = await viaKedge(clusters.cluster1.url, [`http://${clusters.hosts.http1}/`]);
    expect(r.exitCode).not.toBe(0);
  });

  it("cluster-2 proxies for the id_token the fixture got from oidc-provider, and refuses without it", async () => {
    const c2 = clusters.cluster2;
    const ok = await viaKedge(c2.url, ["--proxy-header", `Proxy-Authorization: Bearer ${cachedIdToken()}`, `http://${clusters.hosts.http2}/hi`]);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).upstream).toBe("cluster-2");
    const refused = await viaKedge(c2.url, [`http://${clusters.hosts.http2}/hi`]);
    expect(refused.status).toBe(401);
    expect(refused.headers["x-kedge-error-type"]).toBe("unauthorized");
  });

  it("both serve the Greeter over gRPC by :authority", async () => {
    const { pki, cluster1, cluster2, hosts } = clusters;
    const identity = grpc.credentials.createSsl(Buffer.from(pki.ca), readFileSync(cluster1.clientKeyFile), readFileSync(cluster1.clientCertFile));
    const one = new GreeterClient(`localhost:${cluster1.port}`, identity, { "grpc.default_authority": hosts.grpc1 });
    const two = new GreeterClient(`localhost:${cluster2.port}`, grpc.credentials.createSsl(Buffer.from(pki.ca)), { "grpc.default_authority": hosts.grpc2 });
    try {
      const bearer = new grpc.Metadata();
      bearer.set("proxy-authorization", `Bearer ${cachedIdToken()}`);
      const [r1, r2] = await Promise.all([unary(one, "sayHello", { name: "one" }), unary(two, "sayHello", { name: "two" }, bearer)]);
      expect(r1.error).toBeUndefined();
      expect(r1.response).toMatchObject({ message: "Hello one!", server: "cluster-1" });
      expect(r2.error).toBeUndefined();
      expect(r2.response).toMatchObject({ message: "Hello two!", server: "cluster-2" });
    } finally {
      one.close();
      two.close();
    }
  });

  it("its winch-style options map both clusters, and the OIDC source refreshes the seeded token at the provider", async () => {
    const options = clusters.options();
    const routing = new KedgeRouting(loadClientConfig(options), { home: clusters.dir });
    try {
      const before = clusters.cluster2.issuer.grants.filter((g) => g === "refresh_token").length;
      const one = await routing.target(clusters.hosts.http1, undefined, "http");
      const two = await routing.target(clusters.hosts.grpc2, 443, "grpc");
      expect(one.kind === "kedge" && one.kedge.href).toBe(`${clusters.cluster1.url}/`);
      expect(one.kind === "kedge" && one.headers.authorization).toBe("Bearer first-backend-token");
      expect(two.kind === "kedge" && two.kedge.href).toBe(`${clusters.cluster2.url}/`);
      expect(two.kind === "kedge" && two.headers["proxy-authorization"]).toStartWith("Bearer ey");
      expect(clusters.cluster2.issuer.grants.filter((g) => g === "refresh_token").length).toBe(before + 1);
    } finally {
      routing.close();
    }
  });
});
