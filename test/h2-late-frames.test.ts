import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { data, frame, rstStream, settings, type Frame } from "./helpers/h2-wire.ts";

// Frames a client sends on a stream kedge already finished (RFC 9113 §5.1, §6.9). kedge answers a
// request whose backend is down at once, before the client ends its request, and resets the
// stream (NO_ERROR) since it wants no more of the body; frames still in flight then are dropped.
// But once the client resets the stream too, anything more it sends is its own error, and a
// WINDOW_UPDATE of 0 is an error on any stream. h2spec's 5.1/8, 5.1/9 and 6.9/2 race exactly this.

let kedge: TestKedge;

beforeAll(async () => {
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", h2c_port: 0, admin_port: 0, log_level: "error" },
    // Port 1 refuses at once: kedge answers 502 before the request body ends.
    http: { backends: [{ name: "down", static: { addresses: ["127.0.0.1:1"] } }], routes: [{ backend_name: "down" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
});

const preface = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings()]);
const authority = Buffer.from("localhost");
/** HEADERS for POST / (no END_STREAM: a body would follow). */
const post = (id: number) => frame(1, 0x4, id, Buffer.concat([Buffer.from([0x83, 0x86, 0x84, 0x01, authority.length]), authority]));
const windowUpdate = (id: number, increment: number) => frame(8, 0, id, Buffer.from([increment >>> 24, (increment >>> 16) & 255, (increment >>> 8) & 255, increment & 255]));

/** A raw client connection that records kedge's frames and can wait for one. */
class Client {
  readonly frames: Frame[] = [];
  private buffered = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  readonly socket: net.Socket;
  closed = false;

  constructor(port: number) {
    // The preface goes first, before any frame a test writes.
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.write(preface);
    this.socket.on("error", () => {});
    this.socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    this.socket.on("data", (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d]);
      while (this.buffered.length >= 9) {
        const length = this.buffered.readUIntBE(0, 3);
        if (this.buffered.length < 9 + length) break;
        this.frames.push({ type: this.buffered[3], flags: this.buffered[4], id: this.buffered.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(this.buffered.subarray(9, 9 + length)) });
        this.buffered = this.buffered.subarray(9 + length);
      }
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves with the first frame kedge sent (after `skip` of them) that `match` accepts, or undefined when the connection closes or 5 s pass. */
  async next(match: (f: Frame) => boolean, skip = 0): Promise<Frame | undefined> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = this.frames.slice(skip).find(match);
      if (found || this.closed || Date.now() > deadline) return found;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  /** Sends a POST on stream `id` and waits until kedge has answered it (502) and reset it. */
  async answeredAndReset(id: number): Promise<number> {
    this.socket.write(post(id));
    const reset = await this.next((f) => f.type === 3 && f.id === id);
    expect(reset?.payload.readUInt32BE(0)).toBe(0); // NO_ERROR: the answer is complete, the body unwanted
    return this.frames.length;
  }

  close(): void {
    this.socket.destroy();
  }
}

const rstOn = (id: number) => (f: Frame) => (f.type === 3 && f.id === id) || f.type === 7;
const code = (f: Frame | undefined) => (f === undefined ? undefined : f.type === 3 ? f.payload.readUInt32BE(0) : f.payload.readUInt32BE(4));

describe("HTTP/2 frames on a stream kedge already closed", () => {
  it("drops the client's DATA still in flight when kedge reset the stream, and keeps the connection", async () => {
    const c = new Client(kedge.ports.h2c);
    try {
      const seen = await c.answeredAndReset(1);
      c.socket.write(data(1, 0, "late"));
      // A PING after it: its ACK proves the DATA was read and nothing answered it.
      c.socket.write(frame(6, 0, 0, Buffer.alloc(8)));
      expect(await c.next((f) => f.type === 6 && (f.flags & 1) === 1, seen)).toBeDefined();
      expect(c.frames.slice(seen).filter((f) => f.type === 3 || f.type === 7)).toEqual([]);
    } finally {
      c.close();
    }
  });

  for (const [what, late] of [
    ["DATA", (id: number) => data(id, 1, "after reset")],
    ["HEADERS", (id: number) => post(id)],
  ] as const) {
    it(`answers ${what} after the client's own RST_STREAM with STREAM_CLOSED`, async () => {
      const c = new Client(kedge.ports.h2c);
      try {
        const seen = await c.answeredAndReset(1);
        c.socket.write(Buffer.concat([rstStream(1, 8), late(1)]));
        const answer = await c.next(rstOn(1), seen);
        expect(answer).toBeDefined();
        expect(code(answer)).toBe(5); // STREAM_CLOSED, as a stream or a connection error
      } finally {
        c.close();
      }
    });
  }

  it("answers a WINDOW_UPDATE of 0 on a closed stream with PROTOCOL_ERROR, and ignores a real one", async () => {
    const c = new Client(kedge.ports.h2c);
    try {
      const seen = await c.answeredAndReset(1);
      c.socket.write(Buffer.concat([windowUpdate(1, 1000), windowUpdate(1, 0)]));
      const answer = await c.next(rstOn(1), seen);
      expect(answer?.type).toBe(3);
      expect(code(answer)).toBe(1); // PROTOCOL_ERROR
      expect(c.closed).toBe(false);
    } finally {
      c.close();
    }
  });

  it("answers WINDOW_UPDATEs taking a closed stream's window above 2^31-1 with FLOW_CONTROL_ERROR", async () => {
    const c = new Client(kedge.ports.h2c);
    try {
      const seen = await c.answeredAndReset(1);
      c.socket.write(Buffer.concat([windowUpdate(1, 0x7fffffff), windowUpdate(1, 0x7fffffff)]));
      const answer = await c.next(rstOn(1), seen);
      expect(answer?.type).toBe(3);
      expect(code(answer)).toBe(3); // FLOW_CONTROL_ERROR
    } finally {
      c.close();
    }
  });
});
