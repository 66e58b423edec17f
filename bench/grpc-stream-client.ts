/**
 * Load client for bench/run.sh's gRPC server-streaming workload (h2load counts a call as one
 * request and cannot see gRPC messages or grpc-status, which live in DATA frames and trailers).
 *
 * Opens CONNS h2c (prior knowledge) connections to 127.0.0.1:PORT and keeps CALLS calls in flight
 * on each for SECONDS: every call POSTs one framed 10-byte request to PATH with
 * `content-type: application/grpc` and `te: trailers`, reads the response's gRPC messages as they
 * arrive and, when the stream closes, checks HTTP 200, trailer grpc-status 0 and exactly MESSAGES
 * messages of 12 bytes each (bench/grpc-upstream.ts's stream). A call that fails any check is an
 * error and its messages are not counted. No new call starts after SECONDS; calls in flight then
 * finish and count. Rates are over the time from the first call to the last completion.
 *
 * Usage: bun bench/grpc-stream-client.ts PORT PATH CONNS CALLS SECONDS MESSAGES
 * Prints one `bench-stream: key=value …` line, then `bench-stream-error: <count> <reason>` lines.
 */
import http2 from "node:http2";

const [port, path, conns, calls, seconds, messages] = ((args) => [
  Number(args[0]),
  args[1] ?? "",
  Number(args[2]),
  Number(args[3]),
  Number(args[4]),
  Number(args[5]),
])(process.argv.slice(2));
if (![port, conns, calls, seconds, messages].every((n) => Number.isFinite(n) && n > 0) || !path.startsWith("/")) {
  console.error("usage: bun bench/grpc-stream-client.ts PORT PATH CONNS CALLS SECONDS MESSAGES");
  process.exit(2);
}
const messageBytes = 12; // "hello world\n"
const request = Buffer.from([0, 0, 0, 0, 5, ...Buffer.from("hello")]);
const headers = {
  ":method": "POST",
  ":path": path,
  "content-type": "application/grpc",
  te: "trailers",
};

// Whatever happens, never outlive the run by much (run.sh also wraps this in `timeout`).
setTimeout(() => {
  console.error("bench-stream: hard timeout, calls still in flight");
  process.exit(1);
}, (seconds + 10) * 1000).unref();

const latencies: number[] = []; // ms, OK calls
const firstMessage: number[] = []; // ms from call start to its first message, OK calls
const errors = new Map<string, number>();
let okMessages = 0;
let lastDone = 0;
const fail = (reason: string) => errors.set(reason, (errors.get(reason) ?? 0) + 1);

/** One call; resolves when its stream has closed, whatever the outcome. */
function call(session: http2.ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    const start = performance.now();
    let status = 0;
    let grpcStatus: string | undefined;
    let count = 0;
    let badLength = false;
    let first = NaN;
    // Incremental gRPC framing: 5-byte prefix (flag, big-endian length), then the message.
    const prefix = Buffer.alloc(5);
    let prefixHave = 0;
    let remaining = -1; // bytes of the current message still to come; -1: reading a prefix
    let failure: string | undefined;

    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers);
    } catch (e) {
      fail(`request: ${(e as Error).message}`);
      resolve();
      return;
    }
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]); // trailers-only
    });
    stream.on("data", (chunk: Buffer) => {
      let i = 0;
      while (i < chunk.length) {
        if (remaining < 0) {
          const take = Math.min(5 - prefixHave, chunk.length - i);
          chunk.copy(prefix, prefixHave, i, i + take);
          prefixHave += take;
          i += take;
          if (prefixHave < 5) break;
          prefixHave = 0;
          remaining = prefix.readUInt32BE(1);
          if (remaining !== messageBytes) badLength = true;
        }
        const take = Math.min(remaining, chunk.length - i);
        remaining -= take;
        i += take;
        if (remaining === 0) {
          remaining = -1;
          if (count++ === 0) first = performance.now() - start;
        }
      }
    });
    stream.on("trailers", (t) => {
      if (t["grpc-status"] !== undefined) grpcStatus = String(t["grpc-status"]);
    });
    stream.on("error", (e: Error) => {
      failure ??= `stream error: ${(e as NodeJS.ErrnoException).code ?? e.message}`;
    });
    stream.on("close", () => {
      const end = performance.now();
      lastDone = end;
      if (!failure) {
        if (status !== 200) failure = `HTTP status ${status || "none"}`;
        else if (grpcStatus !== "0") failure = `grpc-status ${grpcStatus ?? "missing"}`;
        else if (badLength || prefixHave !== 0 || remaining !== -1) failure = "malformed or unexpected message";
        else if (count !== messages) failure = `${count} messages instead of ${messages}`;
      }
      if (failure) fail(failure);
      else {
        latencies.push(end - start);
        firstMessage.push(first);
        okMessages += count;
      }
      resolve();
    });
    stream.end(request);
  });
}

function connect(): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.once("connect", () => resolve(session));
    session.once("error", reject);
  });
}

const pct = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] : NaN;

async function main() {
  let sessions: http2.ClientHttp2Session[];
  try {
    sessions = await Promise.all(Array.from({ length: conns }, connect));
  } catch (e) {
    console.log(`bench-stream: calls=0 ok=0 errors=1 messages=0 seconds=0`);
    console.log(`bench-stream-error: 1 connect: ${(e as Error).message}`);
    process.exit(0);
  }
  for (const s of sessions) s.on("error", (e: Error) => fail(`session error: ${e.message}`));
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const slot = async (session: http2.ClientHttp2Session) => {
    while (performance.now() < deadline && !session.closed && !session.destroyed) await call(session);
  };
  await Promise.all(sessions.flatMap((s) => Array.from({ length: calls }, () => slot(s))));
  const elapsed = ((lastDone || performance.now()) - start) / 1000;
  for (const s of sessions) s.close();

  latencies.sort((a, b) => a - b);
  firstMessage.sort((a, b) => a - b);
  const errorCount = [...errors.values()].reduce((a, b) => a + b, 0);
  const f = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : "nan");
  console.log(
    [
      "bench-stream:",
      `calls=${latencies.length + errorCount}`,
      `ok=${latencies.length}`,
      `errors=${errorCount}`,
      `messages=${okMessages}`,
      `seconds=${f(elapsed)}`,
      `calls_per_s=${f(latencies.length / elapsed, 1)}`,
      `msgs_per_s=${f(okMessages / elapsed, 1)}`,
      `p50_ms=${f(pct(latencies, 50))}`,
      `p99_ms=${f(pct(latencies, 99))}`,
      `max_ms=${f(latencies[latencies.length - 1] ?? NaN)}`,
      `mean_ms=${f(latencies.reduce((a, b) => a + b, 0) / latencies.length)}`,
      `first_msg_p50_ms=${f(pct(firstMessage, 50))}`,
      `first_msg_p99_ms=${f(pct(firstMessage, 99))}`,
    ].join(" "),
  );
  for (const [reason, n] of [...errors].sort((a, b) => b[1] - a[1]).slice(0, 10)) {
    console.log(`bench-stream-error: ${n} ${reason}`);
  }
  process.exit(0);
}

await main();
