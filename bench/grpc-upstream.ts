/**
 * Minimal gRPC upstream for bench/run.sh: an h2c (HTTP/2 prior knowledge) server that answers every
 * POST with a valid gRPC response without decoding the request (it only drains it):
 * - unary (any path not ending in "/Stream"): headers, one length-prefixed message, trailers
 *   grpc-status 0;
 * - server-streaming (a path ending in "/Stream", e.g. /bench.Echo/Stream): headers, then
 *   MESSAGES messages, each its own write() (so its own DATA frame), then trailers grpc-status 0.
 * Every message is the same 17 bytes: 5-byte prefix + "hello world\n".
 * A GET of /_bench/status answers the number of HTTP/2 connections accepted so far (bench/run.sh
 * counts the upstream connections each run opens).
 * Usage: bun bench/grpc-upstream.ts PORT [MESSAGES]   (default 100; listens on 127.0.0.1:PORT,
 * prints "listening" when ready)
 *
 * HPACK: every response header is sent as a never-indexed literal (`sensitiveHeaders`). Bun's
 * node:http2 (1.4.5) ignores a peer's SETTINGS_HEADER_TABLE_SIZE = 0 and still adds response
 * headers to the dynamic table; nginx's grpc_pass only decodes the static table, so the second call
 * on a kept-alive upstream connection fails there with "upstream sent invalid http2 table index"
 * (502). Never-indexed literals keep the dynamic table empty for every client.
 */
import { createServer, sensitiveHeaders, type ServerHttp2Stream } from "node:http2";

const port = Number(process.argv[2]);
const streamMessages = Number(process.argv[3] ?? 100);
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(streamMessages) || streamMessages < 1) {
  console.error("usage: bun bench/grpc-upstream.ts PORT [MESSAGES]");
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
let sessions = 0;
server.on("session", () => sessions++);
server.on("stream", (stream: ServerHttp2Stream, reqHeaders) => {
  stream.on("error", () => {}); // a reset stream must not take the server down
  stream.resume(); // drain the request body
  if (reqHeaders[":method"] === "GET" && reqHeaders[":path"] === "/_bench/status") {
    stream.respond({ ":status": 200, "content-type": "text/plain", [sensitiveHeaders]: ["content-type", "date"] });
    stream.end(`${sessions}\n`);
    return;
  }
  if (reqHeaders[":method"] !== "POST") {
    stream.respond({ ":status": 405, [sensitiveHeaders]: ["date"] });
    stream.end();
    return;
  }
  stream.respond(headers, { waitForTrailers: true });
  stream.on("wantTrailers", () => stream.sendTrailers(trailers));
  if (!String(reqHeaders[":path"]).endsWith("/Stream")) {
    stream.end(frame);
    return;
  }
  // One message per write, the next one only once the previous has been handed to the session, so
  // each leaves as its own DATA frame (synchronous writes get coalesced into one).
  let sent = 0;
  const next = () => {
    if (stream.destroyed) return;
    if (++sent === streamMessages) stream.end(frame);
    else stream.write(frame, next);
  };
  next();
});
server.on("sessionError", () => {});
server.listen(port, "127.0.0.1", () => console.log("listening"));
