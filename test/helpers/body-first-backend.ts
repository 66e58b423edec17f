import type { Socket, TCPSocketListener } from "bun";

// An HTTP/1.1 backend that answers each request only once its whole body has arrived, whatever
// the method: Bun.serve answers a GET before reading a body, which lets kedge finish a stream
// while the client is still sending (and h2spec's cases on open streams then race).

interface Parse {
  buf: Buffer;
}

/** Bytes of `buf` a whole request takes (head and body), or -1 while it is incomplete. */
function requestLength(buf: Buffer): number {
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd < 0) return -1;
  const head = buf.subarray(0, headEnd).toString("latin1").toLowerCase();
  let at = headEnd + 4;
  if (/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) {
    for (;;) {
      const lineEnd = buf.indexOf("\r\n", at);
      if (lineEnd < 0) return -1;
      const size = Number.parseInt(buf.subarray(at, lineEnd).toString("latin1"), 16);
      at = lineEnd + 2;
      if (size === 0) {
        // Trailer fields, then the empty line.
        const end = buf.indexOf("\r\n\r\n", at - 2);
        return end < 0 ? -1 : end + 4;
      }
      at += size + 2;
      if (at > buf.length) return -1;
    }
  }
  const length = /\r\ncontent-length:\s*(\d+)/.exec(head);
  const total = at + (length ? Number(length[1]) : 0);
  return buf.length >= total ? total : -1;
}

/** Listens on 127.0.0.1; every request gets 200 and `body` once it has been read whole. */
export function bodyFirstBackend(body: string): { listener: TCPSocketListener<Parse>; port: number } {
  const answer = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  const listener = Bun.listen<Parse>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (s) => void (s.data = { buf: Buffer.alloc(0) }),
      data: (s: Socket<Parse>, chunk) => {
        let buf = Buffer.concat([s.data.buf, chunk]);
        for (let n = requestLength(buf); n > 0; n = requestLength(buf)) {
          s.write(answer);
          buf = buf.subarray(n);
        }
        s.data.buf = buf;
      },
    },
  });
  return { listener, port: listener.port };
}
