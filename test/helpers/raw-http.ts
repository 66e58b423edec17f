import net from "node:net";

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Everything the server sent, unparsed. */
  text: string;
}

/**
 * Sends bytes exactly as given over TCP and reads until the server closes. Lets tests send
 * what fetch never would: absolute-form request lines, malformed heads, smuggling attempts.
 */
export async function rawHttp(port: number, request: string | Uint8Array): Promise<RawResponse> {
  const { promise, resolve, reject } = Promise.withResolvers<string>();
  let data = "";
  await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      open: (s) => void s.write(request),
      data: (_s, d) => void (data += d.toString("latin1")),
      close: () => resolve(data),
      error: (_s, e) => reject(e),
    },
  });
  const text = await promise;
  const split = text.indexOf("\r\n\r\n");
  const head = split >= 0 ? text.slice(0, split) : text;
  let body = split >= 0 ? text.slice(split + 4) : "";
  const [statusLine, ...lines] = head.split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) headers[l.slice(0, l.indexOf(":")).toLowerCase()] = l.slice(l.indexOf(":") + 1).trim();
  if (headers["transfer-encoding"] === "chunked") body = dechunk(body);
  return { status: Number(statusLine.split(" ")[1]), headers, body, text };
}

/** Sends `request` over TCP and returns what came back up to the end of the first head (a 101's or CONNECT's answer). */
export function rawHead(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    let got = "";
    socket.on("data", (d) => {
      got += d.toString("latin1");
      if (got.includes("\r\n\r\n")) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(got));
  });
}

function dechunk(s: string): string {
  let out = "";
  let i = 0;
  for (;;) {
    const eol = s.indexOf("\r\n", i);
    if (eol < 0) return out;
    const size = parseInt(s.slice(i, eol), 16);
    if (!size) return out;
    out += s.slice(eol + 2, eol + 2 + size);
    i = eol + 2 + size + 2;
  }
}
