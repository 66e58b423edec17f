import { describe, expect, it } from "bun:test";
import { RequestReplay } from "../src/proxy/request-replay.ts";
import type { ClientStream, ClientStreamHandler } from "../src/proxy/client-stream.ts";
import type { H2Stream } from "../src/upstream/h2/stream.ts";

// A gRPC call's request bytes as RequestReplay keeps them for a replay and sends them upstream:
// a client stream the test feeds, upstream streams that record what they are sent.

class FedClient {
  handler: ClientStreamHandler | undefined;
  readableEnded = false;
  closed = false;
  destroyed = false;
  paused = false;
  handle(handler: ClientStreamHandler) {
    this.handler = handler;
  }
  pause() {
    this.paused = true;
  }
  resume() {
    this.paused = false;
  }
  send(text: string) {
    this.handler!.data(Buffer.from(text));
  }
  finish() {
    this.readableEnded = true;
    this.handler!.end();
  }
}

function recordingUpstream() {
  const sent: string[] = [];
  const upstream = {
    write(chunk: Uint8Array) {
      sent.push(Buffer.from(chunk).toString());
      return true;
    },
    end(chunk?: Uint8Array) {
      sent.push(`end(${chunk === undefined ? "" : Buffer.from(chunk).toString()})`);
    },
  } as unknown as H2Stream;
  return { upstream, sent };
}

function replayOf(client: FedClient): RequestReplay {
  return new RequestReplay(client as unknown as ClientStream, undefined);
}

describe("RequestReplay", () => {
  it("sends a one-message body with END_STREAM, and sends it again to the next upstream", () => {
    const client = new FedClient();
    const replay = replayOf(client);
    client.send("msg");
    client.finish();
    const first = recordingUpstream();
    replay.attach(first.upstream);
    expect(first.sent).toEqual(["end(msg)"]);
    replay.detach();
    const second = recordingUpstream();
    expect(replay.replayable).toBe(true);
    replay.attach(second.upstream);
    expect(second.sent).toEqual(["end(msg)"]);
  });

  it("sends every chunk of an ended body in order, the last with END_STREAM, each time it is attached", () => {
    const client = new FedClient();
    const replay = replayOf(client);
    for (const chunk of ["a", "b", "c"]) client.send(chunk);
    client.finish();
    for (let i = 0; i < 2; i++) {
      const { upstream, sent } = recordingUpstream();
      replay.attach(upstream);
      expect(sent).toEqual(["a", "b", "end(c)"]);
    }
  });

  it("sends what arrived so far of a body still flowing, then the rest as it comes, and keeps it all for a replay", () => {
    const client = new FedClient();
    const replay = replayOf(client);
    client.send("a");
    client.send("b");
    const first = recordingUpstream();
    replay.attach(first.upstream);
    expect(first.sent).toEqual(["a", "b"]);
    client.send("c");
    client.finish();
    expect(first.sent).toEqual(["a", "b", "c", "end()"]);
    replay.detach();
    const second = recordingUpstream();
    replay.attach(second.upstream);
    expect(second.sent).toEqual(["a", "b", "end(c)"]);
  });

  it("sends an empty ended body as a bare END_STREAM", () => {
    const client = new FedClient();
    const replay = replayOf(client);
    client.finish();
    const { upstream, sent } = recordingUpstream();
    replay.attach(upstream);
    expect(sent).toEqual(["end()"]);
  });

  it("keeps nothing once stopped: the call is no longer replayable", () => {
    const client = new FedClient();
    const replay = replayOf(client);
    client.send("a");
    client.finish();
    replay.stop();
    expect(replay.replayable).toBe(false);
  });
});
