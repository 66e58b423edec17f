import { log } from "../observe/log.js";

/** What a server lets finish on SIGTERM: its listeners have stopped accepting and told their clients. */
export interface Draining {
  /** Requests and calls in flight. */
  busy(): boolean;
  /** The deadline passed: each one left is answered "shutting down" (grpc-status UNAVAILABLE, 503 or RST_STREAM). */
  abortInFlight(): void;
  /** Client connections still open; each closes once its last answer is written. */
  openConnections(): number;
}

/** server.graceful_shutdown's default, and winch's. */
export const defaultGracefulShutdownMs = 10_000;

/** How long connections get to flush their last answers and close once nothing is in flight. */
const lingerMs = 500;

/**
 * Lets what is in flight finish within `graceMs`, cuts what is left with a clean answer, then
 * gives connections a moment to write their last frames (GOAWAY, trailers, a Connection: close
 * response) before the caller closes everything.
 */
export async function drain(server: Draining, graceMs: number): Promise<void> {
  const deadline = performance.now() + graceMs;
  while (server.busy() && performance.now() < deadline) await Bun.sleep(25);
  if (server.busy()) {
    log.warn("shutdown deadline reached with requests in flight: ending them");
    server.abortInFlight();
  }
  const lingerUntil = performance.now() + lingerMs;
  while (server.openConnections() > 0 && performance.now() < lingerUntil) await Bun.sleep(10);
}
