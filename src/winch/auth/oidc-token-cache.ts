import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { expiryOf, type TokenSet } from "./oidc-client.js";

/** The file kept between runs: {id_token, refresh_token, expiry}, readable by its owner only. */
export class TokenCacheFile {
  constructor(readonly path: string) {}

  /** The stored tokens; undefined when there are none or the file is unreadable (a login replaces it). */
  load(): TokenSet | undefined {
    let doc: { id_token?: unknown; refresh_token?: unknown; expiry?: unknown };
    try {
      doc = JSON.parse(readFileSync(this.path, "utf8"));
    } catch {
      return undefined;
    }
    if (typeof doc?.id_token !== "string" || doc.id_token === "") return undefined;
    const refreshToken = typeof doc.refresh_token === "string" && doc.refresh_token !== "" ? doc.refresh_token : undefined;
    let expiresAt = typeof doc.expiry === "string" ? Date.parse(doc.expiry) : typeof doc.expiry === "number" ? doc.expiry * 1000 : NaN;
    if (Number.isNaN(expiresAt)) {
      try {
        expiresAt = expiryOf(doc.id_token);
      } catch {
        expiresAt = 0; // unusable id_token: refresh (or log in) at first use
      }
    }
    return { idToken: doc.id_token, refreshToken, expiresAt };
  }

  /** Writes atomically (temp file, then rename) so a crash or a second winch never leaves half a file. */
  save(tokens: TokenSet): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const doc = {
      id_token: tokens.idToken,
      refresh_token: tokens.refreshToken,
      expiry: Number.isFinite(tokens.expiresAt) ? new Date(tokens.expiresAt).toISOString() : undefined,
    };
    const tmp = `${this.path}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      // mode applies at creation, and the temp file is always new: the tokens are never readable by others.
      writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600, flag: "wx" });
      renameSync(tmp, this.path);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  }
}
