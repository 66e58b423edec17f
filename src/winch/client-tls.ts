import { createPrivateKey, X509Certificate } from "node:crypto";
import { keyPairProblems } from "../config/files.js";
import { KedgeError } from "../errors.js";
import { log } from "../observe/log.js";
import type { Credential } from "./auth/source.js";
import { WatchedFile } from "../config/watched-file.js";
import type { ClientTlsFiles } from "./mapper.js";

type ClientCert = NonNullable<Credential["clientCert"]>;

/** By cert_file: a route names one key_file with it. */
interface Pair {
  keyFile: string;
  /** The files' texts when last read: until they change, nothing is parsed again. */
  certText: string;
  keyText: string;
  /** The last texts that made a pair; undefined while they never have. */
  identity: ClientCert | undefined;
}

/**
 * Routes' client certificates (client_tls), read at first use and cached by path: a stat per use
 * notices a rotated file, and the pair is checked again only then. Only files that could be read
 * are kept, so hosts that name no cluster's files do not grow the cache.
 */
export class ClientTlsCache {
  private readonly files = new Map<string, WatchedFile>();
  private readonly pairs = new Map<string, Pair>();

  /** The certificate and key to present; throws an auth-source KedgeError naming the route's field. */
  identity(tls: ClientTlsFiles, routeIndex: number): ClientCert {
    let certText: string;
    let keyText: string;
    try {
      certText = this.read(tls.certFile);
      keyText = this.read(tls.keyFile);
    } catch (e) {
      throw problem(routeIndex, tls, e);
    }
    let pair = this.pairs.get(tls.certFile);
    if (!pair || pair.keyFile !== tls.keyFile || pair.certText !== certText || pair.keyText !== keyText) {
      const lastGood = pair?.keyFile === tls.keyFile ? pair.identity : undefined;
      const identity = matches(certText, keyText) ? { cert: certText, key: keyText } : lastGood;
      // Rotation writes the two files one after the other: until both are new, the last good pair serves.
      if (identity === lastGood && lastGood) log.warn("client_tls certificate and key do not make a pair; the last good pair serves", { route: routeIndex, certFile: tls.certFile });
      pair = { keyFile: tls.keyFile, certText, keyText, identity };
      this.pairs.set(tls.certFile, pair);
    }
    if (!pair.identity) throw problem(routeIndex, tls, new Error("the certificate and key do not make a pair"));
    return pair.identity;
  }

  private read(path: string): string {
    let file = this.files.get(path);
    if (!file) {
      file = new WatchedFile(path);
      const text = file.read();
      this.files.set(path, file);
      return text;
    }
    return file.read();
  }
}

function matches(certText: string, keyText: string): boolean {
  try {
    return new X509Certificate(certText).checkPrivateKey(createPrivateKey(keyText));
  } catch {
    return false;
  }
}

/** The config check's words for what is wrong with the files, which name the field and the reason. */
function problem(routeIndex: number, tls: ClientTlsFiles, e: unknown): KedgeError {
  const at = `routes[${routeIndex}].client_tls`;
  const problems = keyPairProblems(at, "cert_file", tls.certFile, "key_file", tls.keyFile);
  return new KedgeError("auth-source", 502, problems.length > 0 ? problems.join("; ") : `${at}: ${(e as Error).message}`);
}
