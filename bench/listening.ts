import { readFileSync } from "node:fs";

/**
 * Whether something listens on TCP `port`, read from /proc/net/tcp{,6}: no connection is made, so
 * the process measured sees nothing.
 */
export function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hex}`) && f[3] === "0A") return true;
    }
  }
  return false;
}
