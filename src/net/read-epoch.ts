/**
 * Counts socket reads. Every HTTP/2 read (h2/endpoint.ts) and HTTP/1.1 backend read
 * (upstream/h1-connection.ts) begins a new one, so a connection can tell the answers one read
 * relayed to it (a multiplexed backend's batch) from answers that came in separate reads of the
 * same turn (server/h2/connection.ts, schedule).
 */
let read = 0;

export function readBegins(): void {
  read++;
}

export function currentRead(): number {
  return read;
}
