import { describe, expect, it } from "bun:test";
import { H2ServerConnection, type H2ServerHandler } from "../src/server/h2/connection.ts";
import type { H2ServerStream } from "../src/server/h2/stream.ts";
import type { ClientTransport } from "../src/server/h1/transport.ts";
import { readBegins } from "../src/net/read-epoch.ts";
import { frame, settings } from "./helpers/h2-wire.ts";

// kedge writes a client's frames once per event-loop turn (h2-write-batching.test.ts), but a turn
// that relays one large backend read must not hold every answer to its end: what one read queues
// goes out every few hundred bytes. Answers from separate reads (HTTP/1.1 backends) still leave
// together at the turn's end, in one TLS record.

const answers = 40;
const body = Buffer.from("hello world\n");

/** The bytes kedge hands its socket, one entry per write. */
class RecordingTransport implements ClientTransport {
  readonly remoteAddress = "127.0.0.1";
  readonly peer = undefined;
  readonly writes: Buffer[] = [];
  write(bytes: Uint8Array): boolean {
    this.writes.push(Buffer.from(bytes));
    return true;
  }
  writeScratch(): boolean {
    throw new Error("the HTTP/2 server writes its own buffer");
  }
  writeTransient(bytes: Uint8Array, length = bytes.length): boolean {
    this.writes.push(Buffer.from(bytes.subarray(0, length)));
    return true;
  }
  end(): void {}
  terminate(): void {}
  pause(): void {}
  resume(): void {}
}

/** GET / for `localhost` in HPACK: :method GET, :scheme (http 0x86, https 0x87), :path /, :authority literal. */
function getRequest(id: number, scheme: number): Buffer {
  return frame(1, 0x4 | 0x1, id, Buffer.from([0x82, scheme, 0x84, 0x01, 9, ...Buffer.from("localhost")]));
}

function parseFrames(bytes: Buffer): Array<{ type: number; flags: number; id: number }> {
  const frames = [];
  let at = 0;
  while (at + 9 <= bytes.length) {
    const length = bytes.readUIntBE(at, 3);
    frames.push({ type: bytes[at + 3], flags: bytes[at + 4], id: bytes.readUInt32BE(at + 5) & 0x7fffffff });
    at += 9 + length;
  }
  expect(at).toBe(bytes.length); // whole frames only
  return frames;
}

const turnOver = () => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));

/**
 * Opens `answers` streams and answers them all in one synchronous run, as relaying backend reads
 * does: all from one read, or each from a read of its own. Returns the writes made before and after
 * the turn ended.
 */
async function answerAll(plaintext: boolean, readPerAnswer: boolean): Promise<{ duringTurn: Buffer[]; total: Buffer[] }> {
  const transport = new RecordingTransport();
  const streams: H2ServerStream[] = [];
  const handler: H2ServerHandler = {
    limits: { maxHeaderBytes: 16 * 1024, maxHeaders: 100, maxUriBytes: 8 * 1024 },
    errorPrefix: "x-kedge",
    maxStreams: 100,
    stream: (stream) => void streams.push(stream),
    refuse: () => {
      throw new Error("no request should be refused");
    },
  };
  const conn = new H2ServerConnection(transport, handler, {}, plaintext);
  const scheme = plaintext ? 0x86 : 0x87;
  conn.onData(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings(), ...Array.from({ length: answers }, (_, i) => getRequest(2 * i + 1, scheme))]));
  await turnOver();
  expect(streams).toHaveLength(answers);
  transport.writes.length = 0; // the greeting

  readBegins();
  for (const stream of streams) {
    if (readPerAnswer) readBegins();
    stream.respond({ ":status": 200, "content-type": "text/plain" });
    stream.end(body);
  }
  const duringTurn = [...transport.writes];
  await turnOver();
  return { duringTurn, total: transport.writes };
}

function expectEveryAnswer(writes: Buffer[]): void {
  const frames = parseFrames(Buffer.concat(writes));
  for (let i = 0; i < answers; i++) {
    const id = 2 * i + 1;
    expect(frames.filter((f) => f.id === id).map((f) => [f.type, f.flags & 1])).toEqual([
      [1, 0],
      [0, 1],
    ]);
  }
}

describe("HTTP/2 writes within a turn", () => {
  for (const [transport, plaintext] of [
    ["cleartext", true],
    ["TLS", false],
  ] as const) {
    it(`${transport}: answers relayed from one read leave every few hundred bytes, before the turn is over`, async () => {
      const { duringTurn, total } = await answerAll(plaintext, false);
      const bytes = Buffer.concat(total).length;
      expect(bytes).toBeGreaterThan(4 * 256); // enough answers to cross the threshold several times
      expect(duringTurn.length).toBeGreaterThanOrEqual(Math.floor(bytes / 512)); // at least one write per ~two thresholds
      for (const w of duringTurn) parseFrames(w);
      expect(total.length).toBeLessThanOrEqual(duringTurn.length + 1); // the rest at the turn's end, in one write
      expectEveryAnswer(total);
    });

    it(`${transport}: answers from a read each wait for the turn's end and leave in one write`, async () => {
      const { duringTurn, total } = await answerAll(plaintext, true);
      expect(duringTurn).toHaveLength(0);
      expect(total).toHaveLength(1);
      expectEveryAnswer(total);
    });
  }
});
