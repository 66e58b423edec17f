import type { Subprocess } from "bun";
import { StartError } from "../../errors.js";
import { relayLines } from "../../observe/line-relay.js";
import { log } from "../../observe/log.js";
import { workerIdEnv, type Envelope, type WorkerMessage } from "./channel.js";

/** A worker as the supervisor's hooks and the debug views see it. */
export interface WorkerProcess {
  /** 1…N; a restarted worker keeps its id. */
  readonly id: number;
  readonly pid: number;
  /** When this process started (ms since the epoch). */
  readonly startedAt: number;
  /** How often this worker slot was restarted. */
  readonly restarts: number;
}

/** A worker's answer to an ask, or why there is none; `instance` names the process (pid@start) that was asked. */
export type WorkerReply<R = unknown> = { workerId: number; instance: string } & ({ reply: R; error?: undefined } | { reply?: undefined; error: string });

export interface WorkerPoolOptions {
  count: number;
  /** The worker's command line: this binary again, with the same arguments. */
  command: readonly string[];
  env: Record<string, string | undefined>;
  /**
   * Brings a freshly spawned worker into service (sends it what it serves, waits until it listens).
   * Throwing fails the start: at boot kedge exits, later the worker is restarted with backoff.
   */
  start(worker: WorkerProcess, pool: WorkerPool): Promise<void>;
  /** A worker died and will be restarted (the restarts counter). */
  onRestart?(worker: WorkerProcess): void;
}

/** Restart backoff: from 100 ms doubling to 10 s; a worker that served this long starts again at 100 ms. */
const firstBackoffMs = 100;
const maxBackoffMs = 10_000;
const healthyAfterMs = 10_000;
const defaultAskTimeoutMs = 10_000;
/** How long stop() waits for exited workers' output to be relayed. */
const outputFlushMs = 1_000;

interface Pending {
  resolve(reply: unknown): void;
  reject(error: Error): void;
  timer: Timer;
}

class WorkerSlot implements WorkerProcess {
  proc: Subprocess | undefined;
  pid = 0;
  startedAt = 0;
  restarts = 0;
  backoffMs = firstBackoffMs;
  /** Started and answering: asks and broadcasts go only to serving workers. */
  serving = false;
  restartTimer: Timer | undefined;
  /** Copying the process's stdout and stderr to the supervisor's; done once it exited and they are flushed. */
  output: Promise<unknown> = Promise.resolve();
  readonly pending = new Map<number, Pending>();

  constructor(readonly id: number) {}

  view(): WorkerProcess {
    return { id: this.id, pid: this.pid, startedAt: this.startedAt, restarts: this.restarts };
  }

  failPending(why: string): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(why));
    }
    this.pending.clear();
  }
}

/**
 * The supervisor's worker processes: spawns them, carries the IPC channel (channel.ts has the
 * API), restarts a dead one with backoff while the others serve, and stops them all on shutdown.
 */
export class WorkerPool {
  private readonly slots: WorkerSlot[];
  private readonly handlers = new Map<string, (message: WorkerMessage, workerId: number) => void>();
  private readonly startHooks: Array<(worker: WorkerProcess) => void> = [];
  private nextAskId = 1;
  private stopping = false;

  constructor(private readonly options: WorkerPoolOptions) {
    this.slots = Array.from({ length: options.count }, (_, i) => new WorkerSlot(i + 1));
  }

  /** Starts worker 1 first (it binds port-0 listeners and reports the ports), then the others together. */
  async startAll(): Promise<void> {
    const [first, ...rest] = this.slots;
    await this.startSlot(first);
    await Promise.all(rest.map((slot) => this.startSlot(slot)));
  }

  workers(): WorkerProcess[] {
    return this.slots.filter((s) => s.serving).map((s) => s.view());
  }

  onMessage(type: string, handler: (message: WorkerMessage, workerId: number) => void): void {
    this.handlers.set(type, handler);
  }

  onWorkerStart(hook: (worker: WorkerProcess) => void): void {
    this.startHooks.push(hook);
  }

  ask<R = unknown>(workerId: number, message: WorkerMessage, timeoutMs = defaultAskTimeoutMs): Promise<R> {
    const slot = this.slots[workerId - 1];
    if (!slot?.proc) return Promise.reject(new Error(`worker ${workerId} is not running`));
    const id = this.nextAskId++;
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.pending.delete(id);
        reject(new Error(`worker ${workerId} did not answer "${message.type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      slot.pending.set(id, { resolve: resolve as (r: unknown) => void, reject, timer });
      this.post(slot, { kind: "ask", id, message });
    });
  }

  askAll<R = unknown>(message: WorkerMessage, timeoutMs = defaultAskTimeoutMs): Promise<WorkerReply<R>[]> {
    return Promise.all(
      this.slots.filter((s) => s.serving).map((s) => {
        const instance = `${s.pid}@${s.startedAt}`;
        return this.ask<R>(s.id, message, timeoutMs).then(
          (reply): WorkerReply<R> => ({ workerId: s.id, instance, reply }),
          (e: Error): WorkerReply<R> => ({ workerId: s.id, instance, error: e.message }),
        );
      }),
    );
  }

  /**
   * Ends a worker gently (SIGTERM: it drains what it has in flight) for a fresh process to start in
   * its place, as after a death: the start hook brings it up on what the supervisor holds now.
   */
  replace(workerId: number): void {
    const slot = this.slots[workerId - 1];
    if (!this.stopping) slot?.proc?.kill("SIGTERM");
  }

  broadcast(message: WorkerMessage): void {
    for (const slot of this.slots) if (slot.serving) this.post(slot, { kind: "post", message });
  }

  /**
   * SIGTERM to every worker (each drains as a single kedge does), then waits for them to exit;
   * those still running after `waitMs` are killed.
   */
  async stop(waitMs: number): Promise<void> {
    this.stopping = true;
    const running = this.slots.filter((s) => s.proc);
    for (const slot of this.slots) clearTimeout(slot.restartTimer);
    for (const slot of running) slot.proc!.kill("SIGTERM");
    const exited = Promise.all(running.map((s) => s.proc!.exited));
    const timedOut = await Promise.race([exited.then(() => false), Bun.sleep(waitMs).then(() => true)]);
    if (timedOut) {
      const left = running.filter((s) => s.proc && s.proc.exitCode === null && s.proc.signalCode === null);
      log.warn("workers still running past the shutdown deadline: killing them", { workers: left.map((s) => s.id) });
      for (const slot of left) slot.proc!.kill("SIGKILL");
      await exited;
    }
    // The workers' last lines (a drained request's access line) are still on their way.
    await Promise.race([Promise.all(running.map((s) => s.output)), Bun.sleep(outputFlushMs)]);
  }

  private post(slot: WorkerSlot, envelope: Envelope): void {
    try {
      slot.proc?.send(envelope);
    } catch {
      // The worker is exiting; its exit handler fails what waits on it.
    }
  }

  private receive(slot: WorkerSlot, envelope: Envelope): void {
    if (envelope.kind === "reply") {
      const pending = slot.pending.get(envelope.id);
      if (!pending) return;
      slot.pending.delete(envelope.id);
      clearTimeout(pending.timer);
      if (envelope.error !== undefined) pending.reject(new Error(envelope.error));
      else pending.resolve(envelope.reply);
      return;
    }
    this.handlers.get(envelope.message.type)?.(envelope.message, slot.id);
  }

  private spawn(slot: WorkerSlot): Subprocess {
    const proc = Bun.spawn({
      cmd: [...this.options.command],
      env: { ...this.options.env, [workerIdEnv]: String(slot.id) },
      // The supervisor relays the workers' access log (stdout) and logs (stderr) whole lines at a
      // time (observe/line-relay.ts): workers sharing an inherited pipe would tear long lines
      // whenever the pipe is full (a write is atomic only up to PIPE_BUF, 4096 bytes).
      stdio: ["ignore", "pipe", "pipe"],
      // Structured clone: the config goes as the decoded message (bigint fields and all), so a
      // worker needs none of the config's schemas to read it.
      serialization: "advanced",
      ipc: (envelope: Envelope) => this.receive(slot, envelope),
    });
    slot.output = Promise.all([relayLines(proc.stdout, process.stdout), relayLines(proc.stderr, process.stderr)]);
    slot.proc = proc;
    slot.pid = proc.pid;
    slot.startedAt = Date.now();
    void proc.exited.then(() => this.exited(slot, proc));
    return proc;
  }

  private async startSlot(slot: WorkerSlot): Promise<void> {
    const proc = this.spawn(slot);
    try {
      await this.options.start(slot.view(), this);
    } catch (e) {
      proc.kill("SIGKILL");
      throw new StartError(`worker ${slot.id} (pid ${proc.pid}) did not start: ${(e as Error).message}`);
    }
    slot.serving = true;
    log.info("worker serving", { worker: slot.id, pid: proc.pid });
    for (const hook of this.startHooks) hook(slot.view());
  }

  private exited(slot: WorkerSlot, proc: Subprocess): void {
    if (slot.proc !== proc) return;
    slot.proc = undefined;
    slot.serving = false;
    slot.failPending(`worker ${slot.id} exited`);
    if (this.stopping) return;
    const lived = Date.now() - slot.startedAt;
    if (lived >= healthyAfterMs) slot.backoffMs = firstBackoffMs;
    const delay = slot.backoffMs;
    slot.backoffMs = Math.min(slot.backoffMs * 2, maxBackoffMs);
    log.warn("worker exited: restarting it", { worker: slot.id, pid: proc.pid, exitCode: proc.exitCode, signal: proc.signalCode, restartInMs: delay });
    slot.restarts++;
    this.options.onRestart?.(slot.view());
    slot.restartTimer = setTimeout(() => {
      if (this.stopping) return;
      this.startSlot(slot).catch((e: Error) => log.error("worker restart failed", { worker: slot.id, error: e.message }));
    }, delay);
  }
}
