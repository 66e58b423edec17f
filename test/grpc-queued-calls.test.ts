import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// Calls kedge cannot start at once (the backend allows one stream per connection, and a new
// connection is still coming up) wait with their request heads; each must reach the backend with
// its own path and metadata, not with a head kedge built for a later call meanwhile.

let kedge: TestKedge;
let backend: http2.Http2Server;
const message = Buffer.from([0, 0, 0, 0, 2, 0x68, 0x69]);

beforeAll(async () => {
  backend = http2.createServer({ settings: { maxConcurrentStreams: 1 } });
  backend.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on("error", () => {});
    stream.resume();
    stream.on("end", () =>
      setTimeout(() => {
        if (stream.destroyed) return;
        stream.respond({ ":status": 200, "content-type": "application/grpc", "x-path": headers[":path"], "x-n": headers["x-n"] }, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(message);
      }, 20),
    );
  });
  await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    grpc: {
      backends: [{ name: "one_stream", static: { addresses: [`127.0.0.1:${(backend.address() as AddressInfo).port}`] } }],
      routes: [{ backend_name: "one_stream" }],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  backend?.close();
});

function call(session: http2.ClientHttp2Session, n: number): Promise<http2.IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": `/queue.Svc/Call${n}`, "content-type": "application/grpc", te: "trailers", "x-n": String(n) });
    let headers: http2.IncomingHttpHeaders = {};
    req.on("response", (h) => (headers = h));
    req.on("error", reject);
    req.resume();
    req.on("end", () => resolve(headers));
    req.end(message);
  });
}

describe("gRPC calls that wait for a stream slot", () => {
  it("each reaches the backend with its own path and metadata", async () => {
    const session = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`);
    session.on("error", () => {});
    const n = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const answers = await Promise.all(n.map((i) => call(session, i)));
    session.close();
    expect(answers.map((h) => `${h[":status"]} ${h["x-path"]} ${h["x-n"]}`)).toEqual(n.map((i) => `200 /queue.Svc/Call${i} ${i}`));
  });
});
