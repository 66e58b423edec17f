import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDemoBackend } from "../src/demo/backend.ts";
import { binary, ensureBinary, runBinary, waitFor } from "./helpers/binary.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";

// Certificate, key, CA and token files that are missing, unreadable or not what they should be
// are config errors with their field path: from `kedge validate`, at start and on reload, for
// kedge and winch alike, and never a stack trace.

const dir = mkdtempSync(join(tmpdir(), "kedge-files-"));
const missing = (name: string) => join(dir, "nope", name);
let pki: TestPki;
let other: TestPki;
let garbage: string;
const aDirectory = join(dir, "a-directory");

const stackTrace = /^\s+at /m;

beforeAll(() => {
  ensureBinary();
  pki = makeTestPki();
  other = makeTestPki();
  garbage = join(dir, "garbage.pem");
  writeFileSync(garbage, "-----BEGIN PRIVATE KEY-----\nnot a key at all\n-----END PRIVATE KEY-----\n");
  mkdirSync(aDirectory);
});

const write = (name: string, json: unknown) => {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(json));
  return file;
};

function problemsOf(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("  ")).map((l) => l.trim());
}

describe("files named in kedge's config", () => {
  const badKedge = () => ({
    server: {
      bind_address: "127.0.0.1",
      http_tls_port: 0,
      tls_cert_file: missing("tls.crt"),
      tls_key_file: garbage,
      tls_client_ca_files: [pki.caFile, aDirectory],
    },
    auth: { bearer_token_file: missing("token") },
    http: {
      backends: [
        {
          name: "web",
          static: { addresses: ["127.0.0.1:1"] },
          // A real certificate with another CA's key: the pair does not match.
          security: { ca_files: [missing("backend-ca.pem")], client_cert_file: pki.clientCertFile, client_key_file: other.clientKeyFile },
        },
      ],
      routes: [{ backend_name: "web" }],
    },
    kubernetes: { ca_file: garbage, token_file: missing("kube-token"), kubeconfig_path: missing("kubeconfig") },
  });
  const expected = () => [
    `server.tls_cert_file: cannot read "${missing("tls.crt")}": no such file`,
    `server.tls_key_file: "${garbage}" holds no PEM private key`,
    `server.tls_client_ca_files[1]: cannot read "${aDirectory}": is a directory`,
    `auth.bearer_token_file: cannot read "${missing("token")}": no such file`,
    `http.backends[0].security.ca_files[0]: cannot read "${missing("backend-ca.pem")}": no such file`,
    `http.backends[0].security.client_key_file: "${other.clientKeyFile}" is not the key of http.backends[0].security.client_cert_file`,
    `kubernetes.ca_file: "${garbage}" holds no PEM certificate`,
    `kubernetes.token_file: cannot read "${missing("kube-token")}": no such file`,
    `kubernetes.kubeconfig_path: cannot read "${missing("kubeconfig")}": no such file`,
  ];

  it("kedge validate: exit 1, every file problem with its field path, no stack trace", () => {
    const r = Bun.spawnSync([binary, "validate", "--config", write("bad-files.json", badKedge())]);
    const stderr = r.stderr.toString();
    expect(r.exitCode).toBe(1);
    for (const line of expected()) expect(problemsOf(stderr)).toContain(line);
    expect(stderr).not.toMatch(stackTrace);
  });

  it("start: exits non-zero with the same problems, before binding anything", async () => {
    const k = runBinary(["--config", join(dir, "bad-files.json")], dir);
    expect(await k.proc.exited).toBe(1);
    for (const line of expected()) expect(k.stderr()).toContain(line);
    expect(k.stderr()).not.toMatch(stackTrace);
    expect(k.stdout()).not.toContain("listening");
  });

  it("names a token file that is empty and a PEM pasted where a path belongs, without echoing it", () => {
    const empty = join(dir, "empty-token");
    writeFileSync(empty, "\n");
    const r = Bun.spawnSync([binary, "validate", "--config", write("pasted.json", {
      server: { tls_cert_file: pki.serverCert, tls_key_file: pki.serverKey },
      auth: { bearer_token_file: empty },
    })]);
    const stderr = r.stderr.toString();
    expect(r.exitCode).toBe(1);
    expect(stderr).toContain("server.tls_cert_file: holds PEM text; name a file that holds it instead");
    expect(stderr).toContain("server.tls_key_file: holds PEM text; name a file that holds it instead");
    expect(stderr).toContain(`auth.bearer_token_file: "${empty}" is empty`);
    expect(stderr).not.toContain(pki.serverKey.split("\n")[1]);
  });

  describe("on reload", () => {
    const demo = startDemoBackend(0);
    afterAll(() => demo.stop());

    it("rejects a config whose files are missing or broken, logs the field, and keeps serving", async () => {
      const config = join(dir, "reload.json");
      const good = {
        server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
        http: { backends: [{ name: "demo", static: { addresses: [`127.0.0.1:${demo.port}`] } }], routes: [{ backend_name: "demo" }] },
      };
      writeFileSync(config, JSON.stringify(good));
      const k = runBinary(["--config", config], dir);
      try {
        await waitFor(() => /http=\d+/.test(k.stdout()), "kedge to listen", k);
        const port = Number(/http=(\d+)/.exec(k.stdout())![1]);
        const rejections = () => k.stderr().split("config rejected").length - 1;

        writeFileSync(config, JSON.stringify({ ...good, server: { ...good.server, tls_key_file: missing("tls.key") } }));
        k.proc.kill("SIGHUP");
        await waitFor(() => rejections() >= 1, "the rejected reload", k);
        expect(k.stderr()).toContain(`server.tls_key_file: cannot read \\"${missing("tls.key")}\\": no such file`);
        expect(await (await fetch(`http://127.0.0.1:${port}/?name=a`)).text()).toBe("Hello a!\n");

        writeFileSync(config, JSON.stringify({ ...good, server: { ...good.server, tls_key_file: garbage } }));
        k.proc.kill("SIGHUP");
        await waitFor(() => k.stderr().includes("holds no PEM private key"), "the second rejected reload", k);
        expect(k.stderr()).toContain(`server.tls_key_file: \\"${garbage}\\" holds no PEM private key`);
        expect(await (await fetch(`http://127.0.0.1:${port}/?name=b`)).text()).toBe("Hello b!\n");
        expect(k.stderr()).not.toMatch(stackTrace);
        expect(k.proc.exitCode).toBeNull();
      } finally {
        k.proc.kill("SIGKILL");
      }
    });
  });
});

describe("files named in winch's config", () => {
  it("refuses missing and broken files with their field paths, no stack trace", () => {
    const r = Bun.spawnSync([binary, "winch", "--config", write("bad-winch-files.json", {
      server: { http_port: 0, grpc_port: 0, ca_files: [missing("ca.pem")], client_cert_file: garbage, client_key_file: missing("client.key"), pac_file: missing("wpad.dat") },
      auth_sources: [{ name: "k", kube: { path: missing("kubeconfig") } }],
    })]);
    const stderr = r.stderr.toString();
    expect(r.exitCode).toBe(1);
    expect(stderr).toContain(`server.ca_files[0]: cannot read "${missing("ca.pem")}": no such file`);
    expect(stderr).toContain(`server.client_cert_file: "${garbage}" holds no PEM certificate`);
    expect(stderr).toContain(`server.client_key_file: cannot read "${missing("client.key")}": no such file`);
    expect(stderr).toContain(`server.pac_file: cannot read "${missing("wpad.dat")}": no such file`);
    expect(stderr).toContain(`auth_sources[0].kube.path: cannot read "${missing("kubeconfig")}": no such file`);
    expect(stderr).not.toMatch(stackTrace);
  });

  it("refuses a kubeconfig without the user, or a client key that is not the certificate's, as config errors", () => {
    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(kubeconfig, JSON.stringify({ apiVersion: "v1", kind: "Config", users: [{ name: "someone", user: { token: "t" } }] }));
    const r = Bun.spawnSync([binary, "winch", "--config", write("winch-kube.json", {
      server: { http_port: 0, grpc_port: 0, client_cert_file: pki.clientCertFile, client_key_file: other.clientKeyFile },
      auth_sources: [{ name: "k", kube: { path: kubeconfig, user: "nobody" } }],
    })]);
    const stderr = r.stderr.toString();
    expect(r.exitCode).toBe(1);
    expect(stderr).toContain(`server.client_key_file: "${other.clientKeyFile}" is not the key of server.client_cert_file`);
    expect(stderr).not.toMatch(stackTrace);

    const userOnly = Bun.spawnSync([binary, "winch", "--config", write("winch-kube-user.json", {
      server: { http_port: 0, grpc_port: 0 },
      auth_sources: [{ name: "k", kube: { path: kubeconfig, user: "nobody" } }],
    })]);
    expect(userOnly.exitCode).toBe(1);
    expect(userOnly.stderr.toString()).toContain(`auth_sources[0].kube: kubeconfig ${kubeconfig} has no user "nobody"`);
    expect(userOnly.stderr.toString()).toStartWith("invalid config:");
    expect(userOnly.stderr.toString()).not.toMatch(stackTrace);
  });
});
