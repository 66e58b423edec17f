import { createWriteStream, type WriteStream } from "node:fs";
import { peerCertOf } from "../net/peer-cert.js";
import { atTurnEnd } from "../net/turn-end.js";
import { log } from "./log.js";

/** How bad an access line is; the config's level is the least severe one written. */
export type LineLevel = "info" | "warn" | "error";

export const levelRank: Record<LineLevel, number> = { info: 0, warn: 1, error: 2 };

/** The config's level name ("" is the default, info; "warning" is accepted as warn). */
export function parseLineLevel(name: string): LineLevel | undefined {
  if (name === "" || name === "info") return "info";
  if (name === "warn" || name === "warning") return "warn";
  if (name === "error") return "error";
  return undefined;
}

export function httpLineLevel(status: number): LineLevel {
  return status >= 500 ? "error" : status >= 400 ? "warn" : "info";
}

/** Statuses that say the server side failed (gRPC's own classification of retryable/server errors). */
const serverSideGrpcCodes = new Set(["2", "4", "12", "13", "14", "15"]);

export function grpcLineLevel(code: string): LineLevel {
  return code === "0" ? "info" : serverSideGrpcCodes.has(code) ? "error" : "warn";
}

/** The names of auth's Identity a log line shows (observe sits below auth, so only the shape). */
type NamedCaller = { readonly cert?: { readonly subject: string }; readonly token?: { readonly subject: unknown } };

/**
 * Who the caller was, by name only: the verified client certificate's subject and the verified
 * token's subject. `resolved` is what the access decision resolved with (an Identity when a token
 * was verified); the certificate is read from the connection's cache otherwise.
 */
export function identityOf(resolved: unknown, socket: object | null | undefined): { cert: string | undefined; token: string | undefined } {
  const identity = typeof resolved === "object" && resolved !== null ? (resolved as NamedCaller) : undefined;
  const token = typeof identity?.token?.subject === "string" ? identity.token.subject : undefined;
  let cert = identity?.cert?.subject;
  if (cert === undefined) {
    const peer = peerCertOf(socket);
    if (peer?.verified) cert = peer.identity.subject;
  }
  return { cert, token };
}

const maxPathLength = 2048;

/** The path as logged: no query string (tokens travel there), bounded in length. */
export function loggedPath(path: string): string {
  const q = path.indexOf("?");
  const bare = q >= 0 ? path.slice(0, q) : path;
  return bare.length > maxPathLength ? `${bare.slice(0, maxPathLength)}…` : bare;
}

/** Host[:port] as logged: any userinfo ("user:password@") is cut off. */
export function loggedHost(authority: string | undefined): string | undefined {
  if (authority === undefined) return undefined;
  const at = authority.lastIndexOf("@");
  return at >= 0 ? authority.slice(at + 1) : authority;
}

export function millis(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * Access lines (and audit lines) go to stdout (or a file), gathered into one write per turn of
 * the event loop: under load many requests finish in the same turn, and one write is cheaper than
 * one per line (for a worker, one chunk for its supervisor to relay, not one per connection read). Every write holds whole lines, so lines of concurrent requests never interleave.
 */
export class AccessLogWriter {
  private pending = "";
  private file: WriteStream | undefined;
  private filePath = "";

  /** `what`: the stream's name in the log line saying its file failed. */
  constructor(private readonly what = "access log") {}

  /** Appends lines to `path` from now on (created 0600: lines name hosts and users); "" is stdout. */
  to(path: string): void {
    if (path === this.filePath) return;
    this.file?.end();
    this.filePath = path;
    this.file = path ? this.open(path) : undefined;
  }

  /**
   * Opens the file again by its path (after a log rotator renamed it): lines written so far go to
   * the old file, the next ones to a new file at the path. Stdout has nothing to reopen: false.
   */
  reopen(): boolean {
    if (!this.filePath) return false;
    this.flush();
    const old = this.file;
    this.file = this.open(this.filePath);
    old?.end();
    return true;
  }

  private open(path: string): WriteStream {
    const file = createWriteStream(path, { flags: "a", mode: 0o600 });
    file.on("error", (e) => {
      log.error(`${this.what} file failed; its lines go to stdout`, { path, error: e.message });
      if (this.file === file) this.file = undefined;
    });
    return file;
  }

  write(line: string): void {
    // Once the event loop's turn is over (not after this callback): every connection read in the
    // turn has finished its requests by then, so their lines leave in one write.
    if (this.pending === "") atTurnEnd(this.flush);
    this.pending += `${line}\n`;
  }

  private readonly flush = (): void => {
    const out = this.pending;
    if (out === "") return;
    this.pending = "";
    (this.file ?? process.stdout).write(out);
  };

  /** Writes what is waiting, then closes the file, if any. */
  close(): void {
    this.flush();
    this.to("");
  }
}
