import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http2 from "node:http2";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

let first: TestPki, second: TestPki, up: Upstream, kedge: TestKedge;

const configWith = (pki: TestPki, certFile = pki.serverCertFile) => ({
  server: { ...plainServer, http_tls_port: 0, tls_cert_file: certFile, tls_key_file: pki.serverKeyFile },
  http: { backends: [{ name: "up", static: { addresses: [`127.0.0.1:${up.port}`] } }], routes: [{ backend_name: "up" }] },
});

beforeAll(async () => {
  first = makeTestPki();
  second = makeTestPki();
  up = await startUpstream("up");
  kedge = await startTestKedge(configWith(first));
});

afterAll(async () => {
  await kedge.shutdown();
  await up.close();
});

/** One GET on an open HTTP/2 session: its status. */
function get(session: http2.ClientHttp2Session): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":path": "/" });
    req.on("response", (headers) => resolve(Number(headers[":status"])));
    req.on("error", reject);
    req.resume();
    req.end();
  });
}

describe("TLS certificate rotation", () => {
  it("serves a new certificate after a reload, on the same port, without a restart", async () => {
    expect((await curl(["--cacert", first.caFile, kedge.url("/", "tls")])).status).toBe(200);
    // A connection opened before the rotation is still served after it.
    const before = http2.connect(`https://localhost:${kedge.ports.tls}`, { ca: first.ca });
    expect(await get(before)).toBe(200);
    kedge.writeConfig(configWith(second));
    expect(await kedge.reload()).toBeUndefined();
    expect((await curl(["--cacert", second.caFile, kedge.url("/", "tls")])).status).toBe(200);
    expect((await curl(["--cacert", first.caFile, kedge.url("/", "tls")])).exitCode).toBe(60); // peer cert not trusted
    expect(await get(before)).toBe(200);
    before.close();
  });

  it("rejects a reload whose certificate file is unreadable and keeps the current one", async () => {
    kedge.writeConfig(configWith(second, `${second.dir}/missing.pem`));
    const err = await kedge.reload();
    expect(err?.problems.join("\n")).toContain(`server.tls_cert_file: cannot read "${second.dir}/missing.pem": no such file`);
    expect((await curl(["--cacert", second.caFile, kedge.url("/", "tls")])).status).toBe(200);
  });
});
