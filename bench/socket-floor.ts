/**
 * The floor for any proxy on Bun's sockets (Bun.listen / Bun.connect, what kedge's plaintext
 * listeners, upstream pool and HTTP/2 client run on): each client connection gets its own upstream
 * connection and bytes are relayed as they come, unparsed, whatever the protocol (HTTP/1.1 or
 * h2c). No routing, headers, pooling, limits or errors: not a proxy anyone should run. Measured
 * next to kedge and nginx by bench/h1-floor.sh and bench/grpc-floor.sh; whatever kedge costs above
 * it is kedge's own per-request work, not Bun's I/O.
 * Usage: bun bench/socket-floor.ts LISTEN_PORT UPSTREAM_PORT   (127.0.0.1; prints "listening")
 */
import type { Socket } from "bun";

const [listenPort, upstreamPort] = [Number(process.argv[2]), Number(process.argv[3])];

interface Relay {
  upstream: Socket<Relay> | undefined;
  client: Socket<Relay>;
  /** Client bytes that came before the upstream connection was up. */
  early: Buffer[];
}

Bun.listen<Relay>({
  hostname: "127.0.0.1",
  port: listenPort,
  socket: {
    open(client) {
      const relay: Relay = { upstream: undefined, client, early: [] };
      client.data = relay;
      void Bun.connect<Relay>({
        hostname: "127.0.0.1",
        port: upstreamPort,
        data: relay,
        socket: {
          open(up) {
            relay.upstream = up;
            for (const b of relay.early) up.write(b);
            relay.early = [];
          },
          data: (_up, d) => void relay.client.write(d),
          close: () => void relay.client.end(),
          error: () => void relay.client.end(),
        },
      });
    },
    data(client, d) {
      const up = client.data.upstream;
      if (up) up.write(d);
      else client.data.early.push(d);
    },
    close: (client) => void client.data.upstream?.end(),
  },
});
console.log("listening");
