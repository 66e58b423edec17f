import { afterAll, beforeAll, beforeEach, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDemoBackend } from "../src/demo/backend.ts";
import { binary, ensureBinary, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";

// Secrets never leave the process: every field that can hold one gets a distinctive value, every
// surface kedge and winch have is exercised, and no output may contain any of the values.

const dir = mkdtempSync(join(tmpdir(), "kedge-secrets-"));
const mark = randomBytes(4).toString("hex");
const secret = (what: string) => `s3cr3t-${what}-${mark}`;
const secrets = {
  bearer: secret("bearer"),
  otlpHeader: secret("otlp-header"),
  otlpPassword: secret("otlp-password"),
  winchToken: secret("winch-token"),
  winchDummy: secret("winch-dummy"),
  winchOidcSecret: secret("winch-oidc-secret"),
  refreshToken: secret("refresh-token"),
  kubeToken: secret("kube-token"),
  kubePassword: secret("kube-password"),
  kubeExecEnv: secret("kube-exec-env"),
};
// YAML reads an unquoted number as a number: a numeric token must not be echoed either.
const numericSecret = String(7_000_000_000 + Math.floor(Math.random() * 900_000_000));

let pki: TestPki;
/** A line from the middle of a private key: it must show nowhere when the key is pasted into a field. */
let keyLine: string;
const outputs: string[] = [];
const seen = (what: string, text: string) => outputs.push(`--- ${what}\n${text}`);

function expectNoSecrets(): void {
  const all = outputs.join("\n");
  for (const [name, value] of Object.entries(secrets)) {
    if (all.includes(value)) throw new Error(`${name} (${value}) leaked:\n${all}`);
  }
  expect(all).not.toContain(numericSecret);
  expect(all).not.toContain(keyLine);
}

const demo = startDemoBackend(0);
let kedge: Running;
let kedgePorts: Record<string, number>;
const kedgeConfig = join(dir, "kedge.json");

function ports(stdout: string): Record<string, number> {
  const line = /listening: (.*)/.exec(stdout)![1];
  return Object.fromEntries(line.split(" ").map((kv) => kv.split("=")).map(([k, v]) => [k, Number(v)]));
}

const goodKedgeConfig = () => ({
  server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, log_level: "debug" },
  auth: { bearer_token: secrets.bearer },
  http: { backends: [{ name: "demo", static: { addresses: [`127.0.0.1:${demo.port}`] } }], routes: [{ backend_name: "demo" }] },
  observability: {
    access_log: { enabled: true },
    tracing: {
      enabled: true,
      otlp: {
        // Nothing listens on port 1: the export fails and says so in the log.
        endpoint: `http://collector:${secrets.otlpPassword}@127.0.0.1:1/v1/traces`,
        headers: { authorization: `Bearer ${secrets.otlpHeader}` },
        flush_interval: "0.1s",
      },
    },
  },
});

beforeAll(async () => {
  ensureBinary();
  pki = makeTestPki();
  keyLine = pki.serverKey.split("\n")[2];
  writeFileSync(kedgeConfig, JSON.stringify(goodKedgeConfig()));
  kedge = runBinary(["--config", kedgeConfig], dir);
  await waitFor(() => /admin=\d+/.test(kedge.stdout()), "kedge to listen", kedge);
  kedgePorts = ports(kedge.stdout());
});

beforeEach(() => {
  outputs.length = 0;
});

afterAll(() => {
  kedge?.proc.kill("SIGKILL");
  demo.stop();
});

/** With a token authenticator configured, the admin port's /debug/* and AdminService need the token. */
const adminAuth = () => ({ authorization: `Bearer ${secrets.bearer}` });

describe("kedge keeps its secrets", () => {
  it("shows inline secrets as <redacted: inline> on /debug/config, and passwords in URLs as <redacted>", async () => {
    const body = await (await fetch(`http://127.0.0.1:${kedgePorts.admin}/debug/config`, { headers: adminAuth() })).text();
    seen("/debug/config", body);
    const { config } = JSON.parse(body);
    expect(config.auth.bearer_token).toBe("<redacted: inline>");
    expect(config.observability.tracing.otlp.headers.authorization).toBe("<redacted: inline>");
    expect(config.observability.tracing.otlp.endpoint).toBe("http://collector:<redacted>@127.0.0.1:1/v1/traces");
    expectNoSecrets();
  });

  it("redacts AdminService GetConfig, over Connect and through `kedge admin config`", async () => {
    const res = await fetch(`http://127.0.0.1:${kedgePorts.admin}/kedge.admin.v1.AdminService/GetConfig`, {
      method: "POST",
      headers: { "content-type": "application/json", ...adminAuth() },
      body: "{}",
    });
    const body = await res.text();
    seen("GetConfig", body);
    expect(res.status).toBe(200);
    expect(JSON.parse(body).config.auth.bearer_token).toBe("<redacted: inline>");
    const cli = Bun.spawnSync([binary, "admin", "config", "--admin-address", `127.0.0.1:${kedgePorts.admin}`], {
      env: { ...process.env, KEDGE_ADMIN_TOKEN: secrets.bearer },
    });
    seen("kedge admin config", cli.stdout.toString() + cli.stderr.toString());
    expect(cli.exitCode).toBe(0);
    expect(JSON.parse(cli.stdout.toString()).config.observability.tracing.otlp.headers.authorization).toBe("<redacted: inline>");
    expectNoSecrets();
  });

  it("answers requests that fail auth without echoing anything, and logs export failures without the URL's password", async () => {
    const ok = await curl(["-H", `Proxy-Authorization: Bearer ${secrets.bearer}`, `http://127.0.0.1:${kedgePorts.http}/?name=a`]);
    expect(ok.status).toBe(200);
    const wrong = await curl(["-H", "Proxy-Authorization: Bearer not-the-token", `http://127.0.0.1:${kedgePorts.http}/`]);
    seen("wrong token", JSON.stringify(wrong));
    expect(wrong.status).toBe(401);
    const none = await curl([`http://127.0.0.1:${kedgePorts.http}/`]);
    seen("no token", JSON.stringify(none));
    expect(none.status).toBe(401);
    await waitFor(() => kedge.stderr().includes("trace export failed"), "the trace export failure", kedge);
    expect(kedge.stderr()).toContain("collector:<redacted>@127.0.0.1");
    seen("kedge stderr", kedge.stderr());
    expectNoSecrets();
  });

  it("rejects a reload with secrets in the bad config without echoing them, and keeps serving", async () => {
    // Wrong types in secret fields, a private key pasted where a path belongs, an unparsable URL with a password.
    const bad = {
      ...goodKedgeConfig(),
      server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKey },
      auth: { bearer_token: Number(numericSecret) },
      observability: { tracing: { enabled: true, otlp: { endpoint: `ftp://u:${secrets.otlpPassword}@x`, headers: `authorization: Bearer ${secrets.otlpHeader}` } } },
    };
    const badFile = join(dir, "bad.json");
    writeFileSync(badFile, JSON.stringify(bad));
    const validate = Bun.spawnSync([binary, "validate", "--config", badFile]);
    seen("kedge validate", validate.stdout.toString() + validate.stderr.toString());
    expect(validate.exitCode).toBe(1);
    expect(validate.stderr.toString()).toContain("auth.bearer_token: expected a string, got a number");

    writeFileSync(kedgeConfig, JSON.stringify(bad));
    kedge.proc.kill("SIGHUP");
    await waitFor(() => kedge.stderr().includes("config rejected"), "the rejected reload", kedge);
    expect(kedge.stderr()).toContain("observability.tracing.otlp.headers: expected an object of key/value pairs, got a string");
    const ok = await curl(["-H", `Proxy-Authorization: Bearer ${secrets.bearer}`, `http://127.0.0.1:${kedgePorts.http}/?name=b`]);
    expect(ok.body).toBe("Hello b!\n");
    writeFileSync(kedgeConfig, JSON.stringify(goodKedgeConfig()));
    seen("kedge stderr", kedge.stderr());
    expectNoSecrets();
  });
});

describe("winch keeps its secrets", () => {
  let winch: Running | undefined;
  const issuer = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname === "/.well-known/openid-configuration") {
        return Response.json({ issuer: url.origin, token_endpoint: `${url.origin}/token`, authorization_endpoint: `${url.origin}/auth` });
      }
      // A careless issuer that echoes what it was sent: the client secret and the refresh token.
      const sent = await req.text();
      return Response.json({ error: "invalid_grant", error_description: `${sent} ${req.headers.get("authorization") ?? ""}` }, { status: 400 });
    },
  });

  afterAll(() => {
    winch?.proc.kill("SIGKILL");
    issuer.stop(true);
  });

  it("never shows a token, a client secret, a refresh token or kubeconfig credentials", async () => {
    const cache = join(dir, "oidc-cache.json");
    writeFileSync(cache, JSON.stringify({ id_token: "x.y.z", refresh_token: secrets.refreshToken, expiry: "2000-01-01T00:00:00Z" }));
    const kubeconfig = join(dir, "kubeconfig");
    const plugin = join(dir, "plugin.sh");
    mkdirSync(join(dir, "bin"), { recursive: true });
    writeFileSync(plugin, `#!/bin/sh\necho "plugin failed with KEDGE_ENV=$KEDGE_ENV" >&2\nexit 3\n`, { mode: 0o755 });
    writeFileSync(kubeconfig, JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      "current-context": "c",
      contexts: [{ name: "c", context: { cluster: "k", user: "tok" } }],
      clusters: [{ name: "k", cluster: { server: "https://127.0.0.1:1" } }],
      users: [
        { name: "tok", user: { token: secrets.kubeToken } },
        { name: "basic", user: { username: "me", password: secrets.kubePassword } },
        { name: "exec", user: { exec: { apiVersion: "client.authentication.k8s.io/v1", command: plugin, env: [{ name: "KEDGE_ENV", value: secrets.kubeExecEnv }] } } },
      ],
    }));
    const kedgeUrl = `http://127.0.0.1:${kedgePorts.http}`;
    const route = (host: string, auth: string) => ({ direct: { key: `${host}.example:80`, url: kedgeUrl }, proxy_auth: auth, backend_auth: auth });
    const config = join(dir, "winch.json");
    writeFileSync(config, JSON.stringify({
      server: { http_port: 0, grpc_port: 0, monitoring_port: 0, unknown_hosts: "REFUSE", log_level: "debug" },
      routes: ["token", "dummy", "oidc", "kube-token", "kube-basic", "kube-exec"].map((name) => route(name, name)),
      auth_sources: [
        { name: "token", token: { token: secrets.winchToken } },
        { name: "dummy", dummy: { value: secrets.winchDummy } },
        { name: "oidc", oidc: { provider: `http://127.0.0.1:${issuer.port}`, client_id: "winch", secret: secrets.winchOidcSecret, path: cache } },
        { name: "kube-token", kube: { path: kubeconfig, user: "tok" } },
        { name: "kube-basic", kube: { path: kubeconfig, user: "basic" } },
        { name: "kube-exec", kube: { path: kubeconfig, user: "exec" } },
      ],
    }));
    const w = runBinary(["winch", "--config", config], dir);
    winch = w;
    await waitFor(() => /monitoring=\d+/.test(w.stdout()), "winch to listen", w);
    const winchPorts = ports(w.stdout());
    for (const host of ["token", "dummy", "oidc", "kube-token", "kube-basic", "kube-exec"]) {
      const r = await curl(["-x", `http://127.0.0.1:${winchPorts.http}`, `http://${host}.example/`]);
      seen(`winch ${host}`, JSON.stringify(r));
      expect(r.status).toBeGreaterThanOrEqual(400);
    }
    // Its access log names each route's auth sources: by name, never their values.
    await waitFor(() => w.stdout().split('"msg":"access"').length > 6, "winch's access lines", w);
    for (const path of ["/metrics", "/_healthz", "/debug/config"]) {
      seen(`winch ${path}`, await (await fetch(`http://127.0.0.1:${winchPorts.monitoring}${path}`)).text());
    }
    seen("winch stdout", w.stdout());
    seen("winch stderr", w.stderr());
    seen("kedge stderr", kedge.stderr());
    expectNoSecrets();
  });

  it("refuses a bad winch config without echoing its secrets", () => {
    const bad = join(dir, "bad-winch.json");
    writeFileSync(bad, JSON.stringify({
      server: { client_cert_file: pki.clientCertFile, client_key_file: pki.serverKey },
      auth_sources: [
        { name: "n", token: { token: Number(numericSecret) } },
        { name: "d", dummy: { value: [secrets.winchDummy] } },
        { name: "o", oidc: { provider: `ftp://me:${secrets.winchOidcSecret}@x`, client_id: "c", secret: { value: secrets.winchOidcSecret } } },
      ],
    }));
    const r = Bun.spawnSync([binary, "winch", "--config", bad]);
    seen("kedge winch (bad config)", r.stdout.toString() + r.stderr.toString());
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain("auth_sources[0].token.token: expected a string, got a number");
    expectNoSecrets();
  });
});
