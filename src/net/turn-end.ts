import { Batch } from "./batch.js";

/**
 * Work that waits until the event loop's current turn is over (setImmediate): a connection's frames
 * written once per turn, a call's body gathered until its turn ends. Everything queued in a turn
 * shares one setImmediate: one native call and one callback from the loop per turn instead of one
 * per connection (setImmediate was 2% of a gRPC call's CPU in a `bun --cpu-prof` profile with ten
 * client connections and one upstream, bench/README.md). Tasks run in the order they were queued;
 * one queued while the tasks run waits for the next turn, as its own setImmediate would.
 */
const queued = new Batch<() => void>();

export function atTurnEnd(task: () => void): void {
  if (queued.add(task)) setImmediate(runTurnEnd);
}

function runTurnEnd(): void {
  queued.drain(runTask);
}

function runTask(task: () => void): void {
  try {
    task();
  } catch (e) {
    // One task's failure must not keep the others' connections from writing: it surfaces as its own setImmediate's would.
    queueMicrotask(() => {
      throw e;
    });
  }
}
