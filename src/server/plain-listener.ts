import type { Socket, TCPSocketListener } from "bun";
import { BunTransport } from "./h1/transport.js";

/** A client connection fed by a Bun socket. */
export interface PlainConnection {
  onData(data: Buffer): void;
  onDrain(): void;
  onEnd(): void;
}

/** One listener's connections: HTTP/1.1 (h1/connections) or HTTP/2 (h2/connections). */
export interface PlainConnections<C extends PlainConnection> {
  adopt(transport: BunTransport): C;
  closed(conn: C | undefined): void;
  /** Stops taking requests; connections close once their requests are answered. */
  stop(): void;
  kill(): void;
}

export interface PlainListener {
  readonly port: number;
  /** Stops accepting; idle connections close now, busy ones once their requests are answered. */
  stop(): void;
  /** Closes every connection at once. */
  kill(): void;
}

interface SocketState<C> {
  transport: BunTransport;
  conn: C;
}

/** A plaintext listener on Bun.listen whose sockets go to `conns`: no node:net or node:http in the path. */
export function startPlainListener<C extends PlainConnection>(hostname: string, port: number, conns: PlainConnections<C>, reusePort = false): PlainListener {
  const listener: TCPSocketListener<SocketState<C>> = Bun.listen<SocketState<C>>({
    hostname,
    port,
    // Bun 1.4.5 honours reusePort in Bun.listen but its types do not list it yet.
    ...({ reusePort } as object),
    // A client may half-close once its request is sent (nc -N, some health checkers): it still gets its answer.
    allowHalfOpen: true,
    socket: {
      open(socket: Socket<SocketState<C>>) {
        socket.setNoDelay(true);
        const transport = new BunTransport(socket as Socket<unknown>);
        socket.data = { transport, conn: conns.adopt(transport) };
      },
      data: (socket, data) => socket.data.conn.onData(data),
      drain: (socket) => {
        if (socket.data.transport.drained()) socket.data.conn.onDrain();
      },
      end: (socket) => socket.data.conn.onEnd(),
      close: (socket) => conns.closed(socket.data?.conn),
      error: (socket) => conns.closed(socket.data?.conn),
    },
  });
  return {
    port: listener.port,
    stop() {
      listener.stop(false);
      conns.stop();
    },
    kill() {
      listener.stop(true);
      conns.kill();
    },
  };
}
