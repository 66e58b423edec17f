import { readFileSync, statSync } from "node:fs";

/**
 * A small file (token, certificate) re-read when it changes: a stat per read is cheap and catches
 * the kubelet's atomic symlink swap (new inode) and cert-manager's rewrites (new mtime or size) at once.
 */
export class WatchedFile {
  private seen: { key: string; text: string } | undefined;

  constructor(readonly path: string) {}

  /** The file's contents; throws the fs error when it cannot be read. */
  read(): string {
    const st = statSync(this.path);
    const key = `${st.ino}:${st.mtimeMs}:${st.size}`;
    if (this.seen?.key !== key) this.seen = { key, text: readFileSync(this.path, "utf8") };
    return this.seen.text;
  }
}
