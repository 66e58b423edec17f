import type { Socket, TCPSocketListener } from "bun";
import type { H1ClientConnection } from "./connection.js";
import { H1Connections, type H1Options } from "./connections.js";
import { BunTransport } from "./transport.js";

export interface H1Listener {
  readonly port: number;
  /** Stops accepting; idle connections close now, busy ones after their response. */
  stop(): void;
  /** Closes every connection at once. */
  kill(): void;
}

interface SocketState {
  transport: BunTransport;
  conn: H1ClientConnection;
}

/**
 * Plaintext HTTP/1.1 on Bun.listen with kedge's own request parser: no node:http in the path,
 * whose per-request machinery cost more CPU in Bun than nginx's whole proxy (issue 8's profile).
 */
export function startH1Listener(hostname: string, port: number, opts: H1Options): H1Listener {
  let bound = 0;
  const conns = new H1Connections(opts, () => bound);
  const listener: TCPSocketListener<SocketState> = Bun.listen<SocketState>({
    hostname,
    port,
    // A client may half-close once its request is sent (nc -N, some health checkers): it still gets its answer.
    allowHalfOpen: true,
    socket: {
      open(socket: Socket<SocketState>) {
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
  bound = listener.port;
  return {
    port: bound,
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
