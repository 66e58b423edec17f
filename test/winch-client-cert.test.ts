import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadWinchConfig } from "../src/winch/config.ts";
import { startWinch, type Winch } from "../src/winch/winch.ts";
import { issueClientCert, makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// A kubeconfig user's client certificate as proxy_auth: winch presents it in its TLS handshake
// with kedge (it cannot travel in a header). kedge requires client certificates and only lets
// carol's through on its route. Also: a PAC file served as configured.

const dir = mkdtempSync(join(tmpdir(), "winch-cert-"));
let pki: TestPki;
let upstream: Upstream;
let kedge: TestKedge;
let winch: Winch;

beforeAll(async () => {
  pki = makeTestPki();
  upstream = await startUpstream("app");
  const carol = issueClientCert(pki, "carol", "/CN=carol");
  kedge = await startTestKedge({
    server: {
      bind_address: "127.0.0.1", http_tls_port: 0, admin_port: 0, log_level: "error",
      tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile], tls_client_cert_required: true,
    },
    http: {
      backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }],
      routes: [{ backend_name: "app", auth: { allowed_client_subjects: ["CN=carol"] } }],
    },
  });
  const kubeconfig = join(dir, "kubeconfig");
  writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nusers:\n- name: carol\n  user:\n    client-certificate: ${carol.certFile}\n    client-key: ${carol.keyFile}\n`);
  const pacFile = join(dir, "proxy.pac");
  writeFileSync(pacFile, 'function FindProxyForURL(url, host) { return "PROXY corp-proxy:3128"; }\n');
  const kedgeUrl = `https://localhost:${kedge.ports.tls}`;
  winch = await startWinch(
    loadWinchConfig({
      embedded: {
        // No client certificate of winch's own: only the route's auth source gives one.
        server: { http_port: 0, grpc_port: 0, ca_files: [pki.caFile], pac_file: pacFile },
        routes: [
          { direct: { key: "as-carol.internal.example.com", url: kedgeUrl }, proxy_auth: "carol" },
          { direct: { key: "anonymous.internal.example.com", url: kedgeUrl } },
          { direct: { key: "cert-as-backend-auth.internal.example.com", url: kedgeUrl }, backend_auth: "carol" },
        ],
        auth_sources: [{ name: "carol", kube: { user: "carol", path: kubeconfig } }],
      },
    }),
    { home: dir },
  );
});

afterAll(async () => {
  await winch?.close();
  await kedge?.shutdown();
  await upstream?.close();
});

const proxy = () => `http://127.0.0.1:${winch.ports.http}`;

describe("a kubeconfig user's client certificate as proxy_auth", () => {
  it("is presented to kedge in the TLS handshake, and kedge lets carol through", async () => {
    const r = await curl(["-x", proxy(), "http://as-carol.internal.example.com/hi"]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).url).toBe("/hi");
  });

  it("without it kedge refuses the handshake, and winch says it could not reach kedge", async () => {
    const r = await curl(["-x", proxy(), "http://anonymous.internal.example.com/"]);
    expect(r.status).toBe(502);
    expect(r.headers["x-winch-error-type"]).toBe("backend-transport-closed");
  });

  it("cannot be backend_auth: winch says so instead of sending nothing", async () => {
    const r = await curl(["-x", proxy(), "http://cert-as-backend-auth.internal.example.com/"]);
    expect(r.status).toBe(502);
    expect(r.headers["x-winch-error-type"]).toBe("auth-source");
    expect(r.headers["x-winch-error"]).toContain("use it as proxy_auth");
  });
});

describe("PAC", () => {
  it("serves pac_file as it is", async () => {
    const res = await fetch(`http://127.0.0.1:${winch.ports.http}/wpad.dat`);
    expect(res.headers.get("content-type")).toBe("application/x-ns-proxy-autoconfig");
    expect(await res.text()).toContain("PROXY corp-proxy:3128");
  });
});
