/**
 * The floor for any gRPC proxy built on Bun's node:http2: the least a relay can do with that API,
 * for bench/grpc-floor.sh to measure next to kedge and nginx. One upstream session; each call's
 * request is read whole, sent upstream with one end(), and the answer sent back in one go (headers,
 * body, trailers), so every side writes as few frames and packets as the API allows. No routing,
 * auth, metrics, deadlines, streaming or error handling: not a proxy anyone should run.
 * Usage: bun bench/h2-floor.ts LISTEN_PORT UPSTREAM_PORT   (127.0.0.1; prints "listening")
 */
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";

const [listenPort, upstreamPort] = [Number(process.argv[2]), Number(process.argv[3])];
const upstream = http2.connect(`http://127.0.0.1:${upstreamPort}`);
upstream.on("error", (e) => (console.error(`upstream: ${e.message}`), process.exit(1)));

const server = http2.createServer();
server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
  stream.on("error", () => {});
  const body: Buffer[] = [];
  stream.on("data", (c: Buffer) => body.push(c));
  stream.on("end", () => {
    const call = upstream.request({ ":method": "POST", ":path": headers[":path"], ":authority": headers[":authority"], "content-type": "application/grpc", te: "trailers" });
    call.on("error", () => {});
    call.end(Buffer.concat(body));
    const answer: Buffer[] = [];
    let trailers: IncomingHttpHeaders = {};
    call.on("data", (c: Buffer) => answer.push(c));
    call.on("trailers", (t) => (trailers = t));
    call.on("end", () => {
      if (stream.destroyed || stream.closed) return;
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": String(trailers["grpc-status"] ?? "0") }));
      stream.end(Buffer.concat(answer));
    });
  });
});
server.listen(listenPort, "127.0.0.1", () => console.log("listening"));
