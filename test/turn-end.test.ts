import { describe, expect, it } from "bun:test";
import { atTurnEnd } from "../src/net/turn-end.ts";

// Work queued for the end of the event loop's turn: what connections write once per turn.

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("atTurnEnd", () => {
  it("runs the turn's tasks after the turn's microtasks, in the order they were queued", async () => {
    const ran: string[] = [];
    atTurnEnd(() => ran.push("a"));
    queueMicrotask(() => ran.push("microtask"));
    atTurnEnd(() => ran.push("b"));
    expect(ran).toEqual([]);
    await nextTurn();
    expect(ran).toEqual(["microtask", "a", "b"]);
  });

  it("runs a task queued while the tasks run in a later turn, once", async () => {
    const ran: string[] = [];
    atTurnEnd(() => {
      ran.push("first");
      atTurnEnd(() => ran.push("queued by first"));
    });
    await nextTurn();
    expect(ran).toEqual(["first"]);
    await nextTurn();
    await nextTurn();
    expect(ran).toEqual(["first", "queued by first"]);
  });

  it("runs the other tasks when one throws, and the error still surfaces as an uncaught exception", async () => {
    // In a process of its own: bun test reports an uncaught error as the test's failure.
    const script = `
      import { atTurnEnd } from ${JSON.stringify(new URL("../src/net/turn-end.ts", import.meta.url).pathname)};
      const ran = [];
      process.on("uncaughtException", (e) => ran.push("uncaught: " + e.message));
      atTurnEnd(() => { throw new Error("task failed"); });
      atTurnEnd(() => ran.push("after the failure"));
      setTimeout(() => console.log(JSON.stringify(ran)), 20);
    `;
    const child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(child.stdout).text();
    expect(await child.exited).toBe(0);
    expect(JSON.parse(out)).toEqual(["after the failure", "uncaught: task failed"]);
  });
});
