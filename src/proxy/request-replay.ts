import type { ClientStream, ClientStreamHandler } from "./client-stream.js";
import type { H2Stream } from "../upstream/h2/stream.js";
import { atTurnEnd } from "../net/turn-end.js";
import { Batch } from "../net/batch.js";
import { resendLimitBytes } from "../backend/retry-policy.js";

/**
 * The client's request bytes sent upstream before the backend answered. A backend that refuses
 * a stream it never processed (REFUSED_STREAM, or streams above a GOAWAY's last-stream-id:
 * RFC 9113 §8.7), or an endpoint that cannot be reached, leaves the call safe to retry; with
 * these bytes kedge replays it instead of failing it, as gRPC clients do with transparent retry.
 *
 * It also gathers what the client sends in the same event-loop turn as its headers before the
 * upstream stream opens, so a unary call's HEADERS and DATA go upstream in one write.
 *
 * It is the client stream's handler for the whole call: body bytes are recorded, gathered and
 * forwarded here; the stream's close, drain and trailer request go to the current attempt's relay
 * (a replayed call's new relay takes the old one's place).
 */
export class RequestReplay implements ClientStreamHandler {
  /** The relay of the current attempt, from its start. */
  relay: AttemptRelay | undefined;
  /** The body so far: `chunks` holds the chunks after the first (a unary call's body is one). */
  private first: Buffer | undefined = undefined;
  private chunks: Buffer[] | undefined = undefined;
  /** The body is kept for a replay (until stop()). */
  private keeping = true;
  private size = 0;
  private attached: H2Stream | undefined;
  /** Over the replay limit before the first upstream took the bytes: they are sent once, never replayed. */
  private oversize = false;
  private ready: Gatherer | undefined;

  constructor(
    private readonly client: ClientStream,
    /** Where the client's bytes are counted from the first one (a logged call's observation). */
    private readonly counted: { bytesIn: number } | undefined,
  ) {
    client.handle(this);
  }

  data(chunk: Buffer): void {
    if (this.counted) this.counted.bytesIn += chunk.length;
    if (this.keeping) {
      this.size += chunk.length;
      if (this.size <= resendLimitBytes) this.keep(chunk);
      else if (this.attached) this.stop();
      else {
        this.keep(chunk);
        this.oversize = true;
      }
    }
    if (this.attached && !this.attached.write(chunk)) this.client.pause();
  }

  end(): void {
    if (this.ready) this.go();
    else this.attached?.end();
  }

  close(): void {
    this.relay?.clientClosed();
  }

  drain(): void {
    this.relay?.clientDrained();
  }

  wantTrailers(): void {
    this.relay?.wantTrailers();
  }

  private keep(chunk: Buffer): void {
    if (this.first === undefined) this.first = chunk;
    else (this.chunks ??= []).push(chunk);
  }

  get replayable(): boolean {
    return this.keeping && !this.oversize;
  }

  /**
   * Calls `ready` once the client's body has ended or this event-loop turn is over, whichever is
   * first; the client is then paused until an upstream takes its bytes (flow control holds the rest).
   */
  gather(ready: Gatherer): void {
    if (this.client.readableEnded) return ready.gathered();
    this.ready = ready;
    if (gathering.add(this)) atTurnEnd(turnOver);
  }

  go(): void {
    const ready = this.ready;
    if (!ready) return;
    this.ready = undefined;
    if (!this.attached && !this.client.readableEnded) this.client.pause();
    ready.gathered();
  }

  /** The backend's answer went to the client, or the body outgrew the limit: nothing is kept any more. */
  stop(): void {
    this.keeping = false;
    this.first = undefined;
    this.chunks = undefined;
  }

  /** Sends the client's body to this upstream: what arrived so far, then the rest as it arrives. */
  attach(upstream: H2Stream): void {
    this.attached = upstream;
    const { first, chunks } = this;
    const ended = this.client.readableEnded;
    // The last chunk goes with END_STREAM when the body has ended: a unary call's one DATA frame.
    let last = first;
    if (first !== undefined && chunks !== undefined) {
      upstream.write(first);
      for (let i = 0; i < chunks.length - 1; i++) upstream.write(chunks[i]);
      last = chunks[chunks.length - 1];
    }
    if (!ended && last !== undefined) upstream.write(last);
    if (this.oversize) this.stop();
    if (ended) return upstream.end(last);
    this.client.resume();
  }

  /** The upstream can take more of the body. */
  drained(): void {
    if (!this.client.readableEnded) this.client.resume();
  }

  /** Stops the flow into a refused upstream; the client's further bytes wait in its stream. */
  detach(): void {
    this.attached = undefined;
    this.client.pause();
  }
}

/** Told when a call's body so far is in hand (RequestReplay.gather). */
export interface Gatherer {
  gathered(): void;
}

/** Where the client stream's close, drain and trailer request go: the current attempt's GrpcRelay. */
export interface AttemptRelay {
  clientClosed(): void;
  clientDrained(): void;
  wantTrailers(): void;
}

/** Calls gathering their body until this event-loop turn is over: one task (atTurnEnd) for all of them. */
const gathering = new Batch<RequestReplay>();

function go(replay: RequestReplay): void {
  replay.go(); // a no-op for those whose body ended first
}

function turnOver(): void {
  gathering.drain(go);
}
