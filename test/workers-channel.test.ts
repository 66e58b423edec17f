import { afterEach, describe, expect, it } from "bun:test";
import { join } from "node:path";
import type { WorkerMessage } from "../src/server/workers/channel.ts";
import { WorkerPool, type WorkerProcess } from "../src/server/workers/supervisor.ts";
import { until } from "./helpers/wait.ts";

// The supervisor ⇄ worker IPC channel other parts of kedge build on, with real worker processes
// (test/helpers/channel-worker.ts) instead of kedge ones.

let pool: WorkerPool | undefined;
afterEach(async () => {
  await pool?.stop(2000);
  pool = undefined;
});

function startPool(count = 2, hooks: { onRestart?: (w: WorkerProcess) => void } = {}): WorkerPool {
  pool = new WorkerPool({
    count,
    command: [process.execPath, join(import.meta.dir, "helpers/channel-worker.ts")],
    env: process.env,
    start: async (worker, workers) => void (await workers.ask(worker.id, { type: "start" })),
    ...hooks,
  });
  return pool;
}

describe("worker IPC channel", () => {
  it("asks one worker and gets its reply", async () => {
    const p = startPool();
    await p.startAll();
    expect(await p.ask(2, { type: "echo", text: "hi" })).toEqual({ workerId: 2, text: "hi" });
  });

  it("asks every worker, replies in worker order", async () => {
    const p = startPool(3);
    await p.startAll();
    const replies = await p.askAll({ type: "echo", text: "all" });
    expect(replies.map(({ workerId, reply }) => ({ workerId, reply }))).toEqual([1, 2, 3].map((workerId) => ({ workerId, reply: { workerId, text: "all" } })));
    // Each names the process that answered: its pid and when it started.
    const byId = new Map(p.workers().map((w) => [w.id, `${w.pid}@${w.startedAt}`]));
    for (const r of replies) expect(r.instance).toBe(byId.get(r.workerId)!);
  });

  it("rejects an ask whose handler throws, or that no handler takes", async () => {
    const p = startPool(1);
    await p.startAll();
    await expect(p.ask(1, { type: "fail" })).rejects.toThrow("asked to fail");
    await expect(p.ask(1, { type: "nobody" })).rejects.toThrow('worker 1 has no handler for "nobody"');
    expect((await p.askAll({ type: "fail" })).map(({ workerId, error }) => ({ workerId, error }))).toEqual([{ workerId: 1, error: "asked to fail" }]);
  });

  it("broadcasts to every worker, and hears what workers send", async () => {
    const p = startPool();
    await p.startAll();
    const heard: Array<[number, unknown]> = [];
    p.onMessage("noted", (m: WorkerMessage, workerId) => heard.push([workerId, m.text]));
    p.broadcast({ type: "note", text: "x" });
    await until("both workers to answer", () => heard.length === 2);
    expect(heard.sort()).toEqual([[1, "x"], [2, "x"]]);
  });

  it("restarts a worker that dies, fails what was asked of it, and runs the start hooks again", async () => {
    const restarted: number[] = [];
    const p = startPool(2, { onRestart: (w) => restarted.push(w.id) });
    const started: WorkerProcess[] = [];
    p.onWorkerStart((w) => started.push(w));
    await p.startAll();
    expect(started.map((w) => w.id).sort()).toEqual([1, 2]);
    const before = p.workers()[0].pid;
    await expect(p.ask(1, { type: "exit" })).rejects.toThrow("worker 1 exited");
    await until("worker 1 to be back", () => started.length === 3);
    expect(restarted).toEqual([1]);
    expect(started[2]).toMatchObject({ id: 1, restarts: 1 });
    expect(started[2].pid).not.toBe(before);
    expect(await p.ask(1, { type: "echo", text: "again" })).toEqual({ workerId: 1, text: "again" });
  });

  it("replaces a worker on request: SIGTERM to it, a new process in its slot, started like the first", async () => {
    const p = startPool(2);
    const started: WorkerProcess[] = [];
    p.onWorkerStart((w) => started.push(w));
    await p.startAll();
    const [one, two] = p.workers();
    p.replace(1);
    await until("worker 1's new process to start", () => started.length === 3);
    expect(() => process.kill(one.pid, 0)).toThrow();
    expect(started[2]).toMatchObject({ id: 1, restarts: 1 });
    expect(started[2].pid).not.toBe(one.pid);
    expect(p.workers().find((w) => w.id === 2)!.pid).toBe(two.pid);
    expect(await p.ask(1, { type: "echo", text: "new" })).toEqual({ workerId: 1, text: "new" });
  });

  it("stops every worker", async () => {
    const p = startPool();
    await p.startAll();
    const pids = p.workers().map((w) => w.pid);
    await p.stop(2000);
    pool = undefined;
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });
});
