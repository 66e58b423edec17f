/**
 * The floor for any gRPC proxy whose client side is Bun's node:http2 (the design card's choice):
 * a node:http2 server that answers each unary call itself, with the bytes bench/grpc-upstream.ts
 * sends (headers, one 17-byte message, trailers grpc-status 0), written in one go. No upstream,
 * routing, auth or metrics: what node:http2 alone costs per call, for bench/grpc-floor.sh to
 * measure next to kedge and nginx's whole grpc_pass proxy.
 * Usage: bun bench/h2-ingress-floor.ts LISTEN_PORT   (127.0.0.1; prints "listening")
 */
import http2, { type ServerHttp2Stream } from "node:http2";

const message = Buffer.from("\x00\x00\x00\x00\x0chello world\n", "latin1");
const server = http2.createServer();
server.on("stream", (stream: ServerHttp2Stream) => {
  stream.on("error", () => {});
  stream.on("data", () => {});
  stream.on("end", () => {
    if (stream.destroyed || stream.closed) return;
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(message);
  });
});
server.listen(Number(process.argv[2]), "127.0.0.1", () => console.log("listening"));
