import type { FrameBuffer } from "../../src/h2/frames.ts";
import type { Socket, TCPSocketListener } from "bun";

// A scripted HTTP/2 server for tests of kedge's upstream client: it speaks raw frames, written
// here by hand (not with kedge's own encoder), so a test can make the backend misbehave on purpose.

export interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, id: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(id, 5);
  return Buffer.concat([head, payload]);
}

export const settings = (pairs: Array<[number, number]> = [], ack = false) => {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([k, v], i) => (p.writeUInt16BE(k, i * 6), p.writeUInt32BE(v, i * 6 + 2)));
  return frame(4, ack ? 1 : 0, 0, p);
};
const u32 = (...values: number[]) => Buffer.concat(values.map((v) => Buffer.from([v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255])));
export const goaway = (lastId: number, code: number) => frame(7, 0, 0, u32(lastId, code));
export const rstStream = (id: number, code: number) => frame(3, 0, id, u32(code));
export const ping = (data: Buffer) => frame(6, 0, 0, data);
/** HEADERS with ":status 200" (static index 8) and, when given, a literal "grpc-status". */
export const status200 = (id: number, flags: number, grpcStatus?: string) =>
  frame(1, 0x4 | flags, id, Buffer.concat([Buffer.from([0x88]), grpcStatus === undefined ? Buffer.alloc(0) : Buffer.from([0x00, 11, ...Buffer.from("grpc-status"), grpcStatus.length, ...Buffer.from(grpcStatus)])]));
export const data = (id: number, flags: number, body: string | Uint8Array) => frame(0, flags, id, typeof body === "string" ? Buffer.from(body) : body);

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/** One accepted connection: the frames kedge sent, and a way to answer. */
export class RawConnection {
  readonly frames: Frame[] = [];
  private buf = Buffer.alloc(0);
  private sawPreface = false;
  closed = false;
  onFrame: (f: Frame, conn: RawConnection) => void = () => {};

  constructor(readonly socket: Socket<RawConnection>) {}

  received(chunk: Uint8Array): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (!this.sawPreface) {
      if (this.buf.length < preface.length) return;
      if (this.buf.subarray(0, preface.length).toString("latin1") !== preface) throw new Error("bad preface");
      this.buf = this.buf.subarray(preface.length);
      this.sawPreface = true;
    }
    while (this.buf.length >= 9) {
      const length = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + length) break;
      const f = { type: this.buf[3], flags: this.buf[4], id: this.buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(this.buf.subarray(9, 9 + length)) };
      this.buf = this.buf.subarray(9 + length);
      this.frames.push(f);
      this.onFrame(f, this);
    }
  }

  send(...frames: Buffer[]): void {
    if (!this.closed) this.socket.write(Buffer.concat(frames));
  }

  /** Request streams kedge opened, in order. */
  get streamIds(): number[] {
    return this.frames.filter((f) => f.type === 1).map((f) => f.id);
  }
}

/**
 * Listens on 127.0.0.1; each connection gets `greeting` (the server's SETTINGS unless a test
 * wants otherwise) and `script` to answer kedge's frames.
 */
export function rawH2Server(script: (f: Frame, conn: RawConnection) => void, greeting: Buffer = settings()): { listener: TCPSocketListener<RawConnection>; port: number; connections: RawConnection[] } {
  const connections: RawConnection[] = [];
  const listener = Bun.listen<RawConnection>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        const conn = new RawConnection(socket);
        conn.onFrame = script;
        socket.data = conn;
        connections.push(conn);
        socket.write(greeting);
      },
      data(socket, chunk) {
        socket.data.received(chunk);
      },
      close(socket) {
        socket.data.closed = true;
      },
    },
  });
  return { listener, port: listener.port, connections };
}

/** What a FrameBuffer holds, copied out, and the buffer cleared: what a connection's flush writes. */
export function writtenFrames(out: FrameBuffer): Buffer {
  const bytes = Buffer.from(out.bytes.subarray(0, out.length));
  out.clear();
  return bytes;
}
