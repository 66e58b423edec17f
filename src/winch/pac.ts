import { readFileSync } from "node:fs";

/**
 * A proxy auto-config file (kedge Go's winch): hosts matching any of the shell expressions go
 * through winch, falling back to DIRECT when winch is not running; everything else goes direct.
 */
export function generatePac(proxyAddress: string, shExpressions: readonly string[]): string {
  const proxy = JSON.stringify(`PROXY ${proxyAddress}; DIRECT`);
  const tests = shExpressions.map((e) => `  if (shExpMatch(host, ${JSON.stringify(e)})) return ${proxy};\n`).join("");
  return `function FindProxyForURL(url, host) {\n${tests}  return "DIRECT";\n}\n`;
}

/** The PAC body to serve: the configured file (read per request, so edits need no restart), or one generated. */
export function pacBody(pacFile: string, proxyAddress: string, shExpressions: readonly string[]): string {
  return pacFile ? readFileSync(pacFile, "utf8") : generatePac(proxyAddress, shExpressions);
}

export const pacContentType = "application/x-ns-proxy-autoconfig";
