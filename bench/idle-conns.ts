/**
 * Idle keep-alive connections for bench/run.sh: opens COUNT TCP connections to 127.0.0.1:PORT (at
 * most PARALLEL connecting at once), sends one keep-alive `GET / HTTP/1.1` on each and waits for
 * its `HTTP/1.1 200` answer, then holds them all, idle, for HOLD seconds and reads the proxy's RSS
 * (/proc/PID/status VmRSS and VmHWM) before, with all open, and at the end of the hold. A
 * connection counts as still open if the proxy has neither closed nor reset it; finally every
 * still-open one sends a second request, which must be answered 200 on the same connection.
 *
 * Usage: bun bench/idle-conns.ts PORT PID COUNT HOLD [PARALLEL]
 * Prints `bench-idle-conns: key=value …` lines (RSS in kB).
 */
import net from "node:net";
import { readFileSync } from "node:fs";

const [port, pid, count, hold, parallel] = process.argv.slice(2).map(Number);
if (![port, pid, count, hold].every((n) => Number.isInteger(n) && n > 0)) {
  console.error("usage: bun bench/idle-conns.ts PORT PID COUNT HOLD [PARALLEL]");
  process.exit(2);
}
const inParallel = parallel > 0 ? parallel : 200;
const request = Buffer.from("GET / HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n");

setTimeout(() => {
  console.log("bench-idle-conns: error=hard-timeout");
  process.exit(1);
}, (hold + 60) * 1000).unref();

function rss(): { rss: number; hwm: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(status.match(new RegExp(`^${k}:\\s+(\\d+)`, "m"))?.[1] ?? NaN);
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}

interface Conn {
  socket: net.Socket;
  open: boolean;
  /** Resolves with true when the next response's status line is a 200, false on anything else. */
  waiting?: (ok: boolean) => void;
  buffered: string;
}

const errors = new Map<string, number>();
const fail = (reason: string) => errors.set(reason, (errors.get(reason) ?? 0) + 1);

/** Sends one request on the connection; true if answered 200. Reads until the end of the head. */
function ask(c: Conn): Promise<boolean> {
  return new Promise((resolve) => {
    c.buffered = "";
    c.waiting = resolve;
    c.socket.write(request);
  });
}

function open(): Promise<Conn | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    const c: Conn = { socket, open: false, buffered: "" };
    socket.on("data", (chunk: Buffer) => {
      if (!c.waiting) return; // rest of a body
      c.buffered += chunk.toString("latin1");
      if (!c.buffered.includes("\r\n\r\n")) return;
      const done = c.waiting;
      c.waiting = undefined;
      done(c.buffered.startsWith("HTTP/1.1 200"));
    });
    const gone = (why: string) => {
      if (c.open) fail(`closed while idle: ${why}`);
      c.open = false;
      c.waiting?.(false);
      c.waiting = undefined;
    };
    socket.on("error", (e: NodeJS.ErrnoException) => {
      if (!c.open) {
        fail(`connect/first request: ${e.code ?? e.message}`);
        resolve(undefined);
      }
      gone(e.code ?? e.message);
    });
    socket.on("end", () => gone("end"));
    socket.on("close", () => gone("close"));
    socket.once("connect", async () => {
      if (await ask(c)) {
        c.open = true;
        resolve(c);
      } else {
        fail("first request not answered 200");
        socket.destroy();
        resolve(undefined);
      }
    });
  });
}

const before = rss();
const startedAt = performance.now();
const conns: Conn[] = [];
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(inParallel, count) }, async () => {
    while (next < count) {
      next++;
      const c = await open();
      if (c) conns.push(c);
    }
  }),
);
const openMs = performance.now() - startedAt;
// Let the proxy settle (timers, GC) before reading RSS with everything held.
await Bun.sleep(1000);
const held = rss();
await Bun.sleep(Math.max(0, hold * 1000 - 1000));
const after = rss();
const stillOpen = conns.filter((c) => c.open);
// A connection the proxy silently dropped would only show on use: ask again on every one.
const answers = await Promise.all(stillOpen.map((c) => ask(c)));
const secondOk = answers.filter(Boolean).length;
for (const c of conns) c.socket.destroy();

console.log(
  `bench-idle-conns: target=${count} opened=${conns.length} open_ms=${Math.round(openMs)} hold_s=${hold} ` +
    `still_open=${stillOpen.length} second_request_ok=${secondOk} ` +
    `rss_before_kb=${before.rss} rss_held_kb=${held.rss} rss_end_kb=${after.rss} hwm_kb=${after.hwm}`,
);
for (const [reason, n] of [...errors].sort((a, b) => b[1] - a[1]).slice(0, 10)) {
  console.log(`bench-idle-conns-error: ${n} ${reason}`);
}
process.exit(0);
