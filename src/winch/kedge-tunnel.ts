import tls from "node:tls";
import { KedgeError } from "../errors.js";
import { ResponseParser } from "../upstream/response-parser.js";
import type { ResponseHead } from "../upstream/response-head.js";
import type { WinchContext } from "./context.js";
import type { Mapping } from "./mapper.js";

const connectTimeoutMs = 5_000;

/** kedge's answer to a CONNECT: its head, what came after the head in the same read, and the paused socket to kedge. */
export interface KedgeAnswer {
  head: ResponseHead;
  rest: Uint8Array;
  socket: tls.TLSSocket;
}

/** A sink for a head only: a CONNECT's 200 is followed by the tunnel's bytes, a refusal's body is relayed as it comes. */
class HeadOnly {
  head: ResponseHead | undefined;
  onHead(head: ResponseHead): void {
    // The head is read from the socket's chunk after this read: its text is made now, while the chunk is surely this read's.
    void head.text;
    this.head = head;
  }
  onBody(): boolean {
    return true;
  }
  onEnd(): void {}
}

/**
 * Asks the mapped kedge for a tunnel to `target`: TLS to it (with the route's client certificate,
 * if its proxy_auth is one), then CONNECT with the route's proxy credentials. backend_auth cannot
 * apply inside an opaque tunnel. Rejects with the error a client should see when kedge cannot be
 * reached or does not answer within connectTimeoutMs.
 */
export async function askKedgeForTunnel(ctx: WinchContext, mapping: Mapping, target: string, requestId: string): Promise<KedgeAnswer> {
  const { kedge } = mapping;
  const injection = await ctx.injector.inject(mapping, false);
  const socket = tls.connect(ctx.upstreams.tlsOptions(kedge, injection.clientCert));
  return connectViaKedge(socket, target, { ...injection.headers, "x-kedge-request-id": requestId }).catch((e: Error) => {
    throw new KedgeError("no-connection-to-all-resolved-addresses", 502, `kedge ${kedge.host}: ${e.message}`);
  });
}

/** A field of kedge's answer ("" when absent), for logging a refusal. */
export function answerField(head: ResponseHead, name: string): string {
  const i = head.names.indexOf(name);
  return i < 0 ? "" : head.rawHeaders[2 * i + 1];
}

/**
 * Sends CONNECT once TLS is up and resolves with kedge's answer read by the upstream response
 * parser (the socket is paused after it), or rejects after connectTimeoutMs.
 */
function connectViaKedge(socket: tls.TLSSocket, target: string, headers: Record<string, string>): Promise<KedgeAnswer> {
  socket.once("secureConnect", () => {
    let request = `CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n`;
    for (const name in headers) request += `${name}: ${headers[name]}\r\n`;
    socket.write(`${request}\r\n`);
  });
  return new Promise((resolve, reject) => {
    const parser = new ResponseParser();
    const sink = new HeadOnly();
    parser.expect(sink, true);
    const timer = setTimeout(() => fail(new Error("kedge did not answer CONNECT in time")), connectTimeoutMs);
    const stop = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", fail);
      socket.off("close", closed);
    };
    const fail = (err: Error) => {
      stop();
      socket.destroy();
      reject(err);
    };
    const closed = () => fail(new Error("kedge closed the connection before answering CONNECT"));
    const onData = (chunk: Buffer) => {
      let used: number;
      try {
        used = parser.feed(chunk);
      } catch (e) {
        return fail(e as Error);
      }
      if (!sink.head) return;
      stop();
      socket.pause();
      resolve({ head: sink.head, rest: chunk.subarray(used), socket });
    };
    socket.on("data", onData);
    socket.once("error", fail);
    socket.once("close", closed);
  });
}
