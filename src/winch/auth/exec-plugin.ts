import { execFile } from "node:child_process";
import type { ExecConfig } from "./kubeconfig-user.js";
import type { Credential } from "./source.js";

const runTimeoutMs = 60_000;
/** Run the plugin again this long before its credential expires, so a request never carries one that expires in flight. */
const renewBeforeMs = 10_000;

/**
 * A client-go exec credential plugin (`users[].user.exec` in a kubeconfig): run on demand, its
 * ExecCredential cached until shortly before its expirationTimestamp (for good without one), and
 * one run shared by every caller that asks meanwhile.
 */
export class ExecCredentialPlugin {
  private cached: { ready: Promise<Credential>; renewAt: number } | undefined;
  private running: Promise<Credential> | undefined;

  constructor(
    private readonly exec: ExecConfig,
    private readonly env: Record<string, string | undefined>,
    private readonly timeoutMs = runTimeoutMs,
  ) {}

  credential(): Promise<Credential> {
    if (this.cached && Date.now() < this.cached.renewAt) return this.cached.ready;
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async run(): Promise<Credential> {
    const { credential, expiresAt } = parseExecCredential(await this.execute(), this.exec);
    this.cached = { ready: Promise.resolve(credential), renewAt: expiresAt - renewBeforeMs };
    return credential;
  }

  private execute(): Promise<string> {
    const { command, args, apiVersion, installHint } = this.exec;
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.env)) if (v !== undefined) env[k] = v;
    for (const e of this.exec.env) env[e.name] = e.value;
    env.KUBERNETES_EXEC_INFO = JSON.stringify({ apiVersion, kind: "ExecCredential", spec: { interactive: false } });
    return new Promise((resolve, reject) => {
      const child = execFile(command, [...args], { env, timeout: this.timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") return reject(new Error(`exec plugin "${command}" not found${installHint ? ` (${installHint.trim()})` : ""}`));
        if (err.killed) return reject(new Error(`exec plugin "${command}" did not finish within ${this.timeoutMs / 1000} s`));
        const firstLine = stderr.split("\n").find((l) => l.trim() !== "")?.trim().slice(0, 300);
        const how = err.signal ? `killed by ${err.signal}` : `exit code ${code}`;
        reject(new Error(`exec plugin "${command}" failed (${how})${firstLine ? `: ${firstLine}` : ""}`));
      });
      // Non-interactive, as KUBERNETES_EXEC_INFO says: a plugin that reads stdin sees EOF rather than hanging.
      child.stdin?.end();
    });
  }
}

/** Reads an ExecCredential; expiresAt is Infinity when it has no expirationTimestamp. Never echoes the output (it holds secrets). */
export function parseExecCredential(stdout: string, exec: Pick<ExecConfig, "command" | "apiVersion">): { credential: Credential; expiresAt: number } {
  const bad = (why: string) => new Error(`exec plugin "${exec.command}" ${why}`);
  let doc: { apiVersion?: unknown; kind?: unknown; status?: Record<string, unknown> };
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw bad("did not print an ExecCredential as JSON");
  }
  if (doc?.kind !== "ExecCredential") throw bad(`printed kind "${String(doc?.kind)}", expected "ExecCredential"`);
  if (doc.apiVersion !== exec.apiVersion) throw bad(`printed apiVersion "${String(doc.apiVersion)}", expected "${exec.apiVersion}" as in the kubeconfig`);
  const status = doc.status ?? {};
  const text = (key: string) => (typeof status[key] === "string" && status[key] !== "" ? (status[key] as string) : undefined);
  const token = text("token");
  const cert = text("clientCertificateData");
  const key = text("clientKeyData");
  if (!cert !== !key) throw bad("printed only one of status.clientCertificateData and status.clientKeyData");
  if (!token && !cert) throw bad("printed an ExecCredential with neither status.token nor a client certificate");
  const expiry = text("expirationTimestamp");
  const expiresAt = expiry === undefined ? Infinity : Date.parse(expiry);
  if (Number.isNaN(expiresAt)) throw bad(`printed an unreadable status.expirationTimestamp "${expiry}"`);
  return {
    credential: { header: token ? `Bearer ${token}` : undefined, clientCert: cert && key ? { cert, key } : undefined },
    expiresAt,
  };
}
