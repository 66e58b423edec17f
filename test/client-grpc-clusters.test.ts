import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { createKedgeClient, type KedgeClient } from "../src/client/index.ts";
import { issueClientCert } from "./helpers/certs.ts";
import { connectError, connectGreeter, greeterJson } from "./helpers/connect-greeter.ts";
import { GreeterClient, unary } from "./helpers/grpc.ts";
import { startTwoClusters, type TwoClusters } from "./helpers/two-clusters.ts";

// One client object, two clusters behind two real kedge binaries: cluster-1 wants the test client
// certificate (and only CN=test-client on its routes), cluster-2 an OIDC id_token from the client's
// oidc auth source (the real oidc-provider). Connect and grpc-js alike.

let clusters: TwoClusters;
let kedgeClient: KedgeClient;

beforeAll(async () => {
  clusters = await startTwoClusters();
  kedgeClient = createKedgeClient(clusters.options());
});

afterAll(async () => {
  kedgeClient?.close();
  await clusters?.stop();
});

function connectClient(client: KedgeClient, host: string): Record<string, any> {
  return connectGreeter(client.grpcTransport({ baseUrl: `https://${host}`, ...greeterJson }));
}

async function grpcJsClient(client: KedgeClient, host: string): Promise<grpc.Client> {
  const { address, credentials, options } = await client.grpcJs(`${host}:443`);
  return new GreeterClient(address, credentials, options);
}

describe("one client object, two clusters", () => {
  it("Connect reaches cluster-1 (client certificate) and cluster-2 (OIDC id_token from the auth source)", async () => {
    const [one, two] = await Promise.all([
      connectClient(kedgeClient, clusters.hosts.grpc1).sayHello({ name: "one" }),
      connectClient(kedgeClient, clusters.hosts.grpc2).sayHello({ name: "two" }),
    ]);
    expect(one).toMatchObject({ message: "Hello one!", server: "cluster-1", auth: "Bearer first-backend-token" });
    expect(two).toMatchObject({ message: "Hello two!", server: "cluster-2" });
  });

  it("grpc-js reaches cluster-1 and cluster-2", async () => {
    const one = await grpcJsClient(kedgeClient, clusters.hosts.grpc1);
    const two = await grpcJsClient(kedgeClient, clusters.hosts.grpc2);
    const [r1, r2] = await Promise.all([unary(one, "sayHello", { name: "one" }), unary(two, "sayHello", { name: "two" })]);
    one.close();
    two.close();
    expect(r1.error).toBeUndefined();
    expect(r1.response).toMatchObject({ server: "cluster-1", auth: "Bearer first-backend-token" });
    expect(r2.error).toBeUndefined();
    expect(r2.response.server).toBe("cluster-2");
  });
});

describe("kedge's refusals are ordinary gRPC errors", () => {
  it("cluster-2 without the OIDC token: UNAUTHENTICATED through Connect and grpc-js", async () => {
    const cluster2 = { regexp: { exp: "^[a-z0-9-]+[.]cluster-2[.]internal[.]example[.]com$", url: clusters.cluster2.url } };
    const anonymous = createKedgeClient(clusters.options({ routes: [cluster2] }));
    try {
      expect((await connectError(connectClient(anonymous, clusters.hosts.grpc2).sayHello({ name: "x" }))).code).toBe(Code.Unauthenticated);
      const js = await grpcJsClient(anonymous, clusters.hosts.grpc2);
      const r = await unary(js, "sayHello", { name: "x" });
      js.close();
      expect(r.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      anonymous.close();
    }
  });

  it("cluster-1 with a certificate its route does not allow: PERMISSION_DENIED through Connect and grpc-js", async () => {
    const mallory = issueClientCert(clusters.pki, "mallory", "/CN=mallory");
    const other = createKedgeClient(clusters.options({ tls: { ca_files: [clusters.pki.caFile], client_cert_file: mallory.certFile, client_key_file: mallory.keyFile } }));
    try {
      expect((await connectError(connectClient(other, clusters.hosts.grpc1).sayHello({ name: "x" }))).code).toBe(Code.PermissionDenied);
      const js = await grpcJsClient(other, clusters.hosts.grpc1);
      const r = await unary(js, "sayHello", { name: "x" });
      js.close();
      expect(r.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    } finally {
      other.close();
    }
  });
});
