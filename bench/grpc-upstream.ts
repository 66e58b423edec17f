/**
 * Minimal gRPC upstream for bench/run.sh: an h2c (HTTP/2 prior knowledge) server that answers every
 * POST with a valid unary gRPC response — headers, one length-prefixed message, trailers
 * grpc-status 0 — without decoding the request (it only drains it).
 * Usage: bun bench/grpc-upstream.ts PORT   (listens on 127.0.0.1:PORT, prints "listening" when ready)
 *
 * HPACK: every response header is sent as a never-indexed literal (`sensitiveHeaders`). Bun's
 * node:http2 (1.4.5) ignores a peer's SETTINGS_HEADER_TABLE_SIZE = 0 and still adds response
 * headers to the dynamic table; nginx's grpc_pass only decodes the static table, so the second call
 * on a kept-alive upstream connection fails there with "upstream sent invalid http2 table index"
 * (502). Never-indexed literals keep the dynamic table empty for every client.
 */
import { createServer, sensitiveHeaders, type ServerHttp2Stream } from "node:http2";

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: bun bench/grpc-upstream.ts PORT");
  process.exit(2);
}

// gRPC message frame: 1 byte compressed flag (0), 4 bytes big-endian length, then the message.
const payload = Buffer.from("hello world\n");
const frame = Buffer.alloc(5 + payload.length);
frame.writeUInt8(0, 0);
frame.writeUInt32BE(payload.length, 1);
payload.copy(frame, 5);

// `date` is added by the server itself; it must not be indexed either.
const headers = {
  ":status": 200,
  "content-type": "application/grpc",
  [sensitiveHeaders]: ["content-type", "date"],
};
const trailers = { "grpc-status": "0", [sensitiveHeaders]: ["grpc-status"] };

const server = createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on("stream", (stream: ServerHttp2Stream, reqHeaders) => {
  stream.on("error", () => {}); // a reset stream must not take the server down
  stream.resume(); // drain the request body
  if (reqHeaders[":method"] !== "POST") {
    stream.respond({ ":status": 405, [sensitiveHeaders]: ["date"] });
    stream.end();
    return;
  }
  stream.respond(headers, { waitForTrailers: true });
  stream.on("wantTrailers", () => stream.sendTrailers(trailers));
  stream.end(frame);
});
server.on("sessionError", () => {});
server.listen(port, "127.0.0.1", () => console.log("listening"));
