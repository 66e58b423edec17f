/**
 * The IPC channel between kedge's supervisor and its worker processes (Bun's `ipc` with
 * structured-clone ("advanced") serialization over the inherited channel fd). Other parts of kedge build on it: merged metrics
 * and debug views ask every worker, the Kubernetes watches push endpoint sets to every worker.
 *
 * Messages are plain data objects (structured-clonable: no functions, no class instances to keep)
 * with a `type` string: `{ type: "reload", config }`.
 *
 * Supervisor side (WorkerPool, supervisor.ts):
 *   - `ask(workerId, message)` → Promise of the worker's reply (rejects if the worker dies or
 *     its handler throws, or after a timeout);
 *   - `askAll(message)` → Promise of every live worker's reply, as `{ workerId, reply }` or
 *     `{ workerId, error }`, in worker order;
 *   - `broadcast(message)`: fire and forget to every live worker;
 *   - `onMessage(type, (message, workerId) => void)`: what workers `send`;
 *   - `onWorkerStart((worker) => void)`: runs each time a worker (re)starts and serves, so state
 *     pushed to workers (endpoint sets, …) reaches a restarted one too.
 * Worker side (WorkerChannel, here):
 *   - `handle(type, async (message) => reply)`: answers the supervisor's `ask`s and receives its
 *     broadcasts (the reply of a broadcast is dropped);
 *   - `send(message)`: to the supervisor's `onMessage` handlers.
 */

export interface WorkerMessage {
  readonly type: string;
  readonly [field: string]: unknown;
}

/** What goes over the wire: an ask carries an id its reply returns; a post expects no reply. */
export type Envelope =
  | { kind: "ask"; id: number; message: WorkerMessage }
  | { kind: "post"; message: WorkerMessage }
  | { kind: "reply"; id: number; reply?: unknown; error?: string };

/** Supervisor → every worker: open the audit log's file again (the supervisor got SIGUSR1). */
export const reopenLogsMessage = "reopen-logs";

/** The env var that marks a worker process and carries its id (1…N, kept across restarts). */
export const workerIdEnv = "KEDGE_WORKER_ID";

type Handler = (message: WorkerMessage) => unknown;

/** The worker's end of the channel (process.send / process.on("message")). */
export class WorkerChannel {
  private readonly handlers = new Map<string, Handler>();

  constructor(readonly workerId: number) {
    process.on("message", (envelope: Envelope) => void this.receive(envelope));
  }

  handle(type: string, handler: Handler): void {
    this.handlers.set(type, handler);
  }

  send(message: WorkerMessage): void {
    this.post({ kind: "post", message });
  }

  /** The supervisor went away (it died, or closed the channel): the worker should drain and exit. */
  onDisconnect(handler: () => void): void {
    process.once("disconnect", handler);
  }

  private post(envelope: Envelope): void {
    if (process.connected) process.send!(envelope);
  }

  private async receive(envelope: Envelope): Promise<void> {
    if (envelope.kind === "reply") return;
    const handler = this.handlers.get(envelope.message.type);
    if (envelope.kind === "post") {
      await handler?.(envelope.message);
      return;
    }
    try {
      if (!handler) throw new Error(`worker ${this.workerId} has no handler for "${envelope.message.type}"`);
      this.post({ kind: "reply", id: envelope.id, reply: await handler(envelope.message) });
    } catch (e) {
      this.post({ kind: "reply", id: envelope.id, error: (e as Error).message ?? String(e) });
    }
  }
}
