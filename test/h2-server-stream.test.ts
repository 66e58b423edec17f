import { describe, expect, it } from "bun:test";
import type { ClientStreamHandler } from "../src/proxy/client-stream.ts";
import { H2ServerStream, type StreamCarrier } from "../src/server/h2/stream.ts";

// The server's HTTP/2 stream as the proxy sees it, in process: body bytes wait in the stream
// until its one handler attaches or it resumes, arrive in order, END_STREAM last, and the
// close is told once. The wire tests (h2-server, h2spec) cover the connection around it.

/** A carrier that records what the stream asks of its connection. */
function carrier() {
  const calls: string[] = [];
  const conn: StreamCarrier = {
    socket: {},
    streamWindow: 65_535,
    peerInitialWindow: 65_535,
    sendHeaders: (_s, h, end) => void calls.push(`headers ${h[":status"] ?? h["grpc-status"]}${end ? " end" : ""}`),
    sendHeadLines: (_s, status) => void calls.push(`head lines ${status}`),
    sendForwarded: (_s, h, keepStatus, name, end) => void calls.push(`forwarded ${keepStatus ? h[":status"] : h["grpc-status"]}${name ? ` ${name}` : ""}${end ? " end" : ""}`),
    sendData: (_s, c) => (calls.push(`data ${c.length}`), true),
    endData: (_s, c) => void calls.push(`end ${c?.length ?? 0}`),
    localEnd: () => void calls.push("localEnd"),
    grant: (s) => void calls.push(`grant ${s.unacked}`),
    reset: (_s, code) => void calls.push(`reset ${code}`),
  };
  return { conn, calls };
}

/** A handler that writes down each event, in order. */
function recorder() {
  const events: string[] = [];
  const handler: ClientStreamHandler = {
    data: (c) => void events.push(`data ${Buffer.from(c).toString()}`),
    end: () => void events.push("end"),
    close: () => void events.push("close"),
    drain: () => void events.push("drain"),
  };
  return { handler, events };
}

const bytes = (s: string) => new Uint8Array(Buffer.from(s));
const turn = () => new Promise<void>((r) => queueMicrotask(r));

describe("the server's HTTP/2 stream", () => {
  it("keeps body bytes that arrive before its handler, and delivers them in order, END_STREAM last", async () => {
    const { conn, calls } = carrier();
    const stream = new H2ServerStream(conn, 1, false, -1);
    stream.receive(bytes("one"), false);
    stream.receive(bytes("two"), true);
    const { handler, events } = recorder();
    stream.handle(handler);
    expect(events).toEqual([]); // delivered in a microtask, not inside handle()
    await turn();
    expect(events).toEqual(["data one", "data two", "end"]);
    expect(stream.readableEnded).toBe(true);
    expect(calls.filter((c) => c.startsWith("grant"))).toEqual(["grant 3", "grant 6"]); // window granted as the reader takes bytes
  });

  it("holds bytes while paused and resumes in order; bytes while flowing go straight through", async () => {
    const { conn } = carrier();
    const stream = new H2ServerStream(conn, 1, false, -1);
    const { handler, events } = recorder();
    stream.pause();
    stream.handle(handler); // paused first: attached without starting the body
    stream.receive(bytes("a"), false);
    stream.receive(bytes("b"), false);
    await turn();
    expect(events).toEqual([]);
    stream.resume();
    stream.receive(bytes("c"), false); // behind what waits, never ahead of it
    await turn();
    expect(events).toEqual(["data a", "data b", "data c"]);
    stream.receive(bytes("d"), true);
    expect(events).toEqual(["data a", "data b", "data c", "data d", "end"]);
  });

  it("tells a handler attached after a body-less request its end", async () => {
    const { conn } = carrier();
    const stream = new H2ServerStream(conn, 1, true, -1);
    stream.noBody();
    const { handler, events } = recorder();
    stream.handle(handler);
    await turn();
    expect(events).toEqual(["end"]);
  });

  it("takes one handler only", () => {
    const stream = new H2ServerStream(carrier().conn, 1, false, -1);
    stream.handle(recorder().handler);
    expect(() => stream.handle(recorder().handler)).toThrow("already has a handler");
  });

  it("drops what waits once closed, and tells the close once the connection says so", async () => {
    const { conn } = carrier();
    const stream = new H2ServerStream(conn, 1, false, -1);
    const { handler, events } = recorder();
    stream.pause();
    stream.handle(handler);
    stream.receive(bytes("late"), true);
    stream.markClosed();
    stream.resume();
    await turn();
    expect(events).toEqual([]); // a reset stream's body is not handed on
    stream.tellClosed();
    expect(events).toEqual(["close"]);
    expect(stream.destroyed).toBe(true);
  });

  it("responds before the first DATA, ends once, and passes drain and the trailers request to its handler", () => {
    const { conn, calls } = carrier();
    const stream = new H2ServerStream(conn, 1, true, -1);
    const { handler, events } = recorder();
    let asked = 0;
    stream.handle({ ...handler, wantTrailers: () => void asked++ });
    expect(stream.write(bytes("hello"))).toBe(true);
    stream.end(bytes("!"));
    stream.end(bytes("again")); // a second end is a no-op
    expect(calls).toEqual(["headers 200", "data 5", "end 1"]);
    expect(stream.writableEnded).toBe(true);
    stream.drained();
    expect(stream.askTrailers()).toBe(true);
    expect(events).toEqual(["drain"]);
    expect(asked).toBe(1);
  });

  it("has no trailers to send when its handler asks for none", () => {
    const stream = new H2ServerStream(carrier().conn, 1, true, -1);
    stream.handle(recorder().handler);
    expect(stream.askTrailers()).toBe(false);
  });
});
