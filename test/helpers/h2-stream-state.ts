import { noPendingOut } from "../../src/h2/data-writer.ts";
import type { H2StreamState } from "../../src/h2/endpoint.ts";

/** A bare stream for in-process tests of the shared HTTP/2 engine. */
export class TestStream implements H2StreamState {
  recvWindow = 65_535;
  unacked = 0;
  remoteEnded = false;
  localEnded = false;
  closed = false;
  /** As kedge's streams start: the shared empty queue, replaced once bytes wait. */
  pendingOut: Uint8Array[] = noPendingOut;
  pendingOutBytes = 0;
  pendingEnd = false;
  blockedSince = 0;
  wantsDrain = false;
  constructor(
    readonly id: number,
    public sendWindow = 65_535,
  ) {}
}
