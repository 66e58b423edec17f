export interface CurlResult {
  exitCode: number;
  status: number;
  headers: Record<string, string>;
  body: string;
  httpVersion: string;
  stderr: string;
}

/** Runs the real curl binary; `-w` reports the negotiated HTTP version. `env`: its whole environment (default this process's). */
export async function curl(args: string[], env?: Record<string, string>): Promise<CurlResult> {
  const proc = Bun.spawn(["curl", "-sS", "-D", "-", "-w", "\n%{http_version}", ...args], { stdout: "pipe", stderr: "pipe", env });
  const [out, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const nl = out.lastIndexOf("\n");
  const httpVersion = out.slice(nl + 1);
  const text = out.slice(0, nl);
  // Skip interim heads ("HTTP/1.1 100 Continue") and a proxy's CONNECT answer to the final one.
  let rest = text;
  let head = "";
  for (;;) {
    const split = rest.indexOf("\r\n\r\n");
    if (split < 0) break;
    head = rest.slice(0, split);
    rest = rest.slice(split + 4);
    if (!/^HTTP\/\S+ 1\d\d/.test(head) && !/^HTTP\/1\.[01] 200 Connection established/i.test(head)) break;
  }
  const [statusLine, ...lines] = head.split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) headers[l.slice(0, l.indexOf(":")).toLowerCase()] = l.slice(l.indexOf(":") + 1).trim();
  return { exitCode, status: Number(statusLine?.split(" ")[1] ?? 0), headers, body: rest, httpVersion, stderr };
}
