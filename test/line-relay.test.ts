import { describe, expect, it } from "bun:test";
import { spawn as spawnNode } from "node:child_process";
import { relayLines } from "../src/observe/line-relay.ts";

// Workers' stdout reaches kedge's stdout through the supervisor, whole lines at a time. Real
// processes writing with kedge's AccessLogWriter into real pipes; the sink is a real pipe too.

const writer = new URL("./fixtures/workers/access-lines.ts", import.meta.url).pathname;

function startWorker(id: string, lines: number) {
  return Bun.spawn([process.execPath, writer, id, String(lines)], { stdout: "pipe", stderr: "inherit" });
}

describe("access log lines relayed from workers", () => {
  it("keeps concurrent long lines from two workers whole, one JSON object a line", async () => {
    const perWorker = 3000;
    // The sink: a pipe read slowly enough that it fills and the relay has to wait for drain.
    const cat = spawnNode("sh", ["-c", "sleep 0.3; cat"], { stdio: ["pipe", "pipe", "inherit"] });
    const received: Buffer[] = [];
    cat.stdout.on("data", (b: Buffer) => received.push(b));
    const closed = new Promise((resolve) => cat.on("close", resolve));
    const workers = [startWorker("0", perWorker), startWorker("1", perWorker)];
    await Promise.all(workers.map((w) => relayLines(w.stdout, cat.stdin)));
    cat.stdin.end();
    await closed;
    const lines = Buffer.concat(received).toString("utf8").split("\n");
    expect(lines.pop()).toBe("");
    const seen = { "0": 0, "1": 0 } as Record<string, number>;
    let torn = 0;
    for (const line of lines) {
      try {
        const { worker, n } = JSON.parse(line);
        expect(n).toBe(seen[worker]++);
      } catch {
        torn++;
      }
    }
    expect(torn).toBe(0);
    expect(seen).toEqual({ "0": perWorker, "1": perWorker });
  });

  it("ends a worker's unfinished last line so the next line starts whole", async () => {
    const out: Uint8Array[] = [];
    const sink = { write: (c: Uint8Array) => (out.push(c), true), once: () => undefined };
    async function* source() {
      yield new TextEncoder().encode('{"a":1}\n{"b"');
      yield new TextEncoder().encode(':2}\n{"c":');
    }
    await relayLines(source(), sink);
    expect(Buffer.concat(out).toString()).toBe('{"a":1}\n{"b":2}\n{"c":\n');
  });
});
