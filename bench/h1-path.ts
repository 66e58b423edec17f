/**
 * kedge's HTTP/1.1 request path in-process, without sockets or the kernel: a GET is fed to a client
 * connection, routed, sent to a stand-in upstream connection that answers through the real
 * response parser, and the response written to a stand-in transport. Prints µs per request per
 * round, so a change to the parser, the exchange or the response writer can be measured (and
 * profiled with `bun --cpu-prof bench/h1-path.ts`) without the noise of a loaded machine.
 * Usage: bun bench/h1-path.ts [REQUESTS per round, default 100000]
 */
import { loadConfig } from "../src/config/load.ts";
import { createMetrics } from "../src/observe/metrics.ts";
import { setLogLevel } from "../src/observe/log.ts";
import { exchange } from "../src/proxy/exchange.ts";
import { kedgeHttpProxy } from "../src/proxy/http.ts";
import { configSecrets } from "../src/config/secrets.ts";
import { buildRuntime } from "../src/runtime.ts";
import { H1ServerConnection, type H1Handler } from "../src/server/h1/connection.ts";
import type { ClientTransport } from "../src/server/h1/transport.ts";
import type { ResponseHead } from "../src/upstream/response-head.ts";
import { ResponseParser } from "../src/upstream/response-parser.ts";
import type { ExchangeHandlers } from "../src/upstream/h1-connection.ts";

const requests = Number(process.argv[2] ?? 100_000);
setLogLevel("error");
const config = loadConfig({
  embedded: {
    server: { bind_address: "127.0.0.1", http_port: 0 },
    http: { backends: [{ name: "bench", static: { addresses: ["127.0.0.1:9"] } }], routes: [{ backend_name: "bench", path_rules: ["/*"] }] },
  },
});
const runtime = buildRuntime(config, 1, configSecrets);
const proxy = kedgeHttpProxy({ runtime: () => runtime, metrics: createMetrics() });
const backend = runtime.httpBackends.get("bench")!;
await backend.pendingResolution;

// nginx's answer to the bench's GET, byte for byte.
const answer = Buffer.from(
  "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 21:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n",
);
const parser = new ResponseParser();
const upstream = {
  pool: undefined as unknown,
  begin(_head: string, noBody: boolean, handlers: ExchangeHandlers) {
    parser.expect({ onHead: (h: ResponseHead) => handlers.onHead(h), onBody: (c: Uint8Array) => handlers.onBody(c), onEnd: (last?: Uint8Array) => handlers.onEnd(last) }, noBody);
    parser.feed(answer);
  },
  write: () => true,
  endRequest() {},
  abort() {},
  resume() {},
};
const pool = { acquire: (client: { granted(conn: unknown): void }) => client.granted(upstream), release() {} };
upstream.pool = pool;
Object.assign(backend, { poolFor: () => pool });

let written = 0;
const transport: ClientTransport = {
  remoteAddress: "127.0.0.1",
  peer: undefined,
  write: (bytes) => ((written += bytes.length), true),
  writeScratch: (length) => ((written += length), true),
  writeTransient: (bytes) => ((written += bytes.length), true),
  end() {},
  terminate() {},
  pause() {},
  resume() {},
};
const handler: H1Handler = {
  limits: { maxHeaderBytes: 16_384, maxHeaders: 100, maxUriBytes: 8192 },
  scheme: "http",
  localPort: 8080,
  headTimeoutMs: 10_000,
  idleMs: 120_000,
  draining: false,
  request: (req, res) => exchange(proxy, req, res),
  connect() {},
  refuse: (_conn, err) => {
    throw err;
  },
};
const conn = new H1ServerConnection(transport, handler);
const request = Buffer.from("GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n");
for (let round = 1; round <= 5; round++) {
  const started = performance.now();
  for (let i = 0; i < requests; i++) conn.onData(request);
  await Bun.sleep(1);
  console.log(`round ${round}: ${(((performance.now() - started) * 1000) / requests).toFixed(2)} µs/request, ${(written / requests / round).toFixed(0)} response bytes/request`);
}
process.exit(0);
