import { readFileSync } from "node:fs";
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";

/** What a file named in the config must hold to be usable. */
export type FileKind = "text" | "certificate" | "private-key" | "json";

const reasons: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EISDIR: "is a directory",
  ENOTDIR: "a parent is not a directory",
  ELOOP: "too many symbolic links",
};
const certificateBlock = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Checks a file the config names, at load and on every reload, so a missing or unreadable file is
 * a config error with its field path (and a reload keeps the old config) instead of a failure when
 * a listener or a connection first needs it. Returns the problem, or undefined when it is usable.
 */
export function fileProblem(field: string, path: string, kind: FileKind): string | undefined {
  // A value pasted where a path belongs: saying so beats "no such file" with the value in it.
  if (path.includes("-----BEGIN")) return `${field}: holds PEM text; name a file that holds it instead`;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    return `${field}: cannot read ${JSON.stringify(path)}: ${reasons[code] ?? (code || (e as Error).message)}`;
  }
  const where = `${field}: ${JSON.stringify(path)}`;
  switch (kind) {
    case "text":
      return text.trim() === "" ? `${where} is empty` : undefined;
    case "json":
      try {
        JSON.parse(text);
        return undefined;
      } catch {
        return `${where} is not JSON`;
      }
    case "certificate": {
      const blocks = text.match(certificateBlock) ?? [];
      if (blocks.length === 0) return `${where} holds no PEM certificate`;
      for (const block of blocks) {
        try {
          new X509Certificate(block);
        } catch {
          return `${where} holds a certificate that does not parse`;
        }
      }
      return undefined;
    }
    case "private-key":
      return privateKeyOf(text) ? undefined : `${where} holds no PEM private key`;
  }
}

/**
 * A certificate and its key, each checked when named (another rule asks for the pair): each must
 * be usable, and the key must be the certificate's, or TLS would fail only at the first
 * handshake. `at` is the message holding the two fields.
 */
export function keyPairProblems(at: string, certField: string, certPath: string, keyField: string, keyPath: string): string[] {
  const problems = [
    certPath ? fileProblem(`${at}.${certField}`, certPath, "certificate") : undefined,
    keyPath ? fileProblem(`${at}.${keyField}`, keyPath, "private-key") : undefined,
  ].filter((p): p is string => !!p);
  if (problems.length > 0 || !certPath || !keyPath) return problems;
  const cert = new X509Certificate(readFileSync(certPath, "utf8").match(certificateBlock)![0]);
  const key = privateKeyOf(readFileSync(keyPath, "utf8"))!;
  return cert.checkPrivateKey(key) ? [] : [`${at}.${keyField}: ${JSON.stringify(keyPath)} is not the key of ${at}.${certField}`];
}

function privateKeyOf(text: string): KeyObject | undefined {
  try {
    return createPrivateKey(text);
  } catch {
    return undefined;
  }
}
