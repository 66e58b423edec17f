import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestPki {
  dir: string;
  caFile: string;
  ca: string;
  /** A server cert for localhost, 127.0.0.1 and ::1. */
  serverCert: string;
  serverKey: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

function openssl(args: string[], cwd: string): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.toString()}`);
}

/** Makes a fresh CA with a server cert and a client cert (EC P-256) in a temp directory, with openssl. */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "kedge-pki-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=kedge test CA"], dir);
  const leaf = (name: string, subj: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(["req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subj], dir);
    openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`], dir);
  };
  leaf("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n");
  leaf("client", "/CN=test-client", "extendedKeyUsage=clientAuth\n");
  const f = (n: string) => join(dir, n);
  return {
    dir,
    caFile: f("ca.pem"),
    ca: readFileSync(f("ca.pem"), "utf8"),
    serverCert: readFileSync(f("server.pem"), "utf8"),
    serverKey: readFileSync(f("server.key"), "utf8"),
    serverCertFile: f("server.pem"),
    serverKeyFile: f("server.key"),
    clientCertFile: f("client.pem"),
    clientKeyFile: f("client.key"),
  };
}
