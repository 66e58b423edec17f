// A worker process for test/workers-channel.test.ts: the worker side of the IPC channel, with
// handlers that echo, fail, talk back and die on request.
import { WorkerChannel } from "../../src/server/workers/channel.ts";

const channel = new WorkerChannel(Number(process.env.KEDGE_WORKER_ID));
channel.handle("start", () => ({ pid: process.pid }));
channel.handle("echo", (m) => ({ workerId: channel.workerId, text: m.text }));
channel.handle("fail", () => {
  throw new Error("asked to fail");
});
channel.handle("note", (m) => channel.send({ type: "noted", text: m.text }));
channel.handle("exit", () => process.exit(3));
channel.onDisconnect(() => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
