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

export interface ClientCert {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

/**
 * Issues a client certificate from the test CA (or, with `otherCa`, from a CA kedge does not
 * trust), optionally already expired or not valid until 2099. `sans` as openssl writes them: "DNS:a,URI:spiffe://x".
 * With `serverAuth` it is a server certificate instead (a backend serving an internal name).
 */
export function issueClientCert(pki: TestPki, name: string, subject: string, options: { sans?: string; expired?: boolean; notYetValid?: boolean; otherCa?: boolean; serverAuth?: boolean } = {}): ClientCert {
  const dir = pki.dir;
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  let ca = "ca";
  if (options.otherCa) {
    ca = "other-ca";
    openssl(["req", "-x509", ...ec, "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=untrusted CA"], dir);
  }
  const ext = `extendedKeyUsage=${options.serverAuth ? "serverAuth" : "clientAuth"}\n${options.sans ? `subjectAltName=${options.sans}\n` : ""}`;
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(["req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject], dir);
  if (options.expired || options.notYetValid) {
    // `openssl x509` cannot backdate in OpenSSL 3.0; `openssl ca` can, with a throwaway database.
    writeFileSync(join(dir, "ca.cnf"), "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\ncopy_extensions=copy\nunique_subject=no\n[p]\ncommonName=supplied\n");
    writeFileSync(join(dir, "index.txt"), "");
    writeFileSync(join(dir, "serial"), "1000\n");
    openssl(["ca", "-batch", "-config", "ca.cnf", ...(options.expired ? ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"] : ["-startdate", "20990101000000Z", "-enddate", "20990102000000Z"]), "-in", `${name}.csr`, "-out", `${name}.pem`, "-cert", `${ca}.pem`, "-keyfile", `${ca}.key`, "-notext"], dir);
  } else {
    openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`], dir);
  }
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}.key`);
  return { certFile, keyFile, cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
}
