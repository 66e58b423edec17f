import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import { preface } from "../src/h2/frames.ts";
import { sniffTunnel } from "../src/winch/tunnel-sniff.ts";

// How winch tells a CONNECT tunnel that carries HTTP/2 (gRPC behind grpc_proxy) from one that
// carries anything else, on real sockets: the first bytes decide, at most the preface's 24, within
// a bounded wait; what comes after stays in the socket for whoever serves the tunnel.

let server: net.Server;
let waiting: ((s: net.Socket) => void) | undefined;

beforeAll(async () => {
  server = net.createServer((s) => waiting?.(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
});

afterAll(() => server.close());

/** A connected pair: `client` writes, `tunnel` is the side winch reads. */
async function pair(): Promise<{ client: net.Socket; tunnel: net.Socket }> {
  const tunnel = new Promise<net.Socket>((resolve) => (waiting = resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  const t = await tunnel;
  waiting = undefined;
  return { client, tunnel: t };
}

function readNext(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    socket.once("data", resolve);
    socket.resume();
  });
}

describe("tunnel sniffing", () => {
  it("sees the HTTP/2 preface arriving in pieces, and leaves what follows it in the socket", async () => {
    const { client, tunnel } = await pair();
    const sniffing = sniffTunnel(tunnel, Buffer.alloc(0), 5_000);
    client.write(preface.subarray(0, 3));
    await Bun.sleep(20);
    client.write(preface.subarray(3, 20));
    await Bun.sleep(20);
    client.write(preface.subarray(20));
    const sniffed = await sniffing;
    expect(sniffed.kind).toBe("h2");
    expect(sniffed.kind === "h2" && sniffed.bytes.equals(preface)).toBe(true);
    client.write("SETTINGS-next");
    await Bun.sleep(20);
    expect(tunnel.isPaused()).toBe(true);
    expect((await readNext(tunnel)).toString()).toBe("SETTINGS-next");
    client.destroy();
  });

  it("decides at the first byte that differs: a TLS ClientHello is not HTTP/2", async () => {
    const { client, tunnel } = await pair();
    const sniffing = sniffTunnel(tunnel, Buffer.alloc(0), 5_000);
    client.write(Buffer.from([0x16, 0x03, 0x01]));
    const sniffed = await sniffing;
    expect(sniffed.kind).toBe("other");
    expect(sniffed.kind === "other" && [...sniffed.bytes]).toEqual([0x16, 0x03, 0x01]);
    client.destroy();
  });

  it("decides on bytes the client sent with its CONNECT, without waiting for more", async () => {
    const { client, tunnel } = await pair();
    const early = Buffer.concat([preface, Buffer.from("frames")]);
    const sniffed = await sniffTunnel(tunnel, early, 5_000);
    expect(sniffed.kind).toBe("h2");
    expect(sniffed.kind === "h2" && sniffed.bytes).toBe(early);
    expect((await sniffTunnel(tunnel, Buffer.from("GET / HTTP/1.1\r\n"), 5_000)).kind).toBe("other");
    client.destroy();
  });

  it("gives up on a client that sends nothing within the wait (bounded), and notices one that closes", async () => {
    const silent = await pair();
    const started = performance.now();
    expect((await sniffTunnel(silent.tunnel, Buffer.alloc(0), 200)).kind).toBe("idle");
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
    silent.client.destroy();
    const leaving = await pair();
    const sniffing = sniffTunnel(leaving.tunnel, Buffer.alloc(0), 5_000);
    leaving.client.write("PRI * HT");
    leaving.client.end();
    expect((await sniffing).kind).toBe("closed");
  });
});
