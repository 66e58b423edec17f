import net from "node:net";

export interface TcpRelay {
  port: number;
  /** Connections accepted so far (each is one TLS connection of the client to the target). */
  readonly accepted: number;
  close(): Promise<void>;
}

/** Relays bytes to 127.0.0.1:targetPort and counts the connections it accepts; listens on a loopback address. */
export async function startTcpRelay(targetPort: number, host = "127.0.0.1"): Promise<TcpRelay> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((downstream) => {
    accepted++;
    const upstream = net.connect(targetPort, "127.0.0.1");
    for (const s of [downstream, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        downstream.destroy();
        upstream.destroy();
      });
    }
    downstream.pipe(upstream).pipe(downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get accepted() {
      return accepted;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
