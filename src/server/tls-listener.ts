import type { TlsMaterial } from "./tls-files.js";
import type { Socket, SocketHandler, TCPSocketListener, TCPSocketListenOptions } from "bun";
import { BunTransport } from "./h1/transport.js";
import type { PlainConnection, PlainConnections, PlainListener } from "./plain-listener.js";
import { certificateRefusals, type TlsFailureReason, type TlsHandshakeFailures } from "./tls-failures.js";

/** Where the connections of each negotiated protocol go; no `http1` on a port that speaks h2 only. */
export interface TlsProtocols<H1 extends PlainConnection, H2 extends PlainConnection> {
  h2: PlainConnections<H2>;
  http1: PlainConnections<H1> | undefined;
}

/** The TLS connection a request's client certificate and address are read from (net/peer-cert reads it as a node TLSSocket). */
class TlsPeer {
  readonly authorized: boolean;

  constructor(
    private readonly socket: Socket<unknown>,
    readonly authorizationError: string | undefined,
  ) {
    this.authorized = socket.authorized;
  }

  get remoteAddress(): string {
    return this.socket.remoteAddress;
  }

  getPeerCertificate(): ReturnType<Socket<unknown>["getPeerCertificate"]> {
    return this.socket.getPeerCertificate();
  }
}

interface SocketState {
  transport: BunTransport;
  conn: PlainConnection;
  conns: PlainConnections<PlainConnection>;
}

const tls12 = 0x0303;

/** ALPN protocol names in their wire form (length-prefixed), as Bun.listen takes them. */
function alpnWire(protocols: readonly string[]): Buffer {
  return Buffer.concat(protocols.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, "latin1")])));
}

export interface TlsListenOptions {
  /** The listener's name in metrics and logs (tls, grpc_tls). */
  name: string;
  hostname: string;
  port: number;
  material: TlsMaterial;
  failures: TlsHandshakeFailures;
  /** A client that has not finished its handshake by then is closed (request_header_timeout). */
  handshakeTimeoutMs: number;
  onHandshakeTimeout(): void;
  /** A client certificate was refused in the handshake (the audit log's deny). */
  onCertificateRefused(reason: TlsFailureReason, address: string | undefined): void;
}

export interface TlsListener extends PlainListener {
  /**
   * Serves new handshakes with `material`; connections already open keep theirs. Throws, leaving
   * the current material in place, if Bun refuses it.
   */
  rotate(material: TlsMaterial): void;
}

/**
 * A TLS listener on Bun.listen: each connection goes, once its handshake is done, to the h2 or the
 * HTTP/1.1 connection set by the ALPN protocol it negotiated (HTTP/1.1 when it offered none).
 * Failed handshakes are counted by reason.
 *
 * Bun cannot change a listening socket's certificate (`reload` takes handlers only, oven-sh/bun
 * issue 43815), so a rotation binds a second socket to the same port with SO_REUSEPORT and the new
 * material, and closes the first once the event loop has taken the connections already queued on it
 * (closing it at once would reset them; one that arrives in between is reset unless the node sets
 * net.ipv4.tcp_migrate_req).
 */
export function startTlsListener<H1 extends PlainConnection, H2 extends PlainConnection>(options: TlsListenOptions, protocols: TlsProtocols<H1, H2>): TlsListener {
  const alpn = alpnWire(protocols.http1 ? ["h2", "http/1.1"] : ["h2"]);
  const handlers = socketHandlers(options, protocols);
  const bind = (port: number, material: TlsMaterial): TCPSocketListener<SocketState | undefined> => {
    const onHandshake = handlers.handshake;
    const listenOptions: TCPSocketListenOptions<SocketState | undefined> = {
      hostname: options.hostname,
      port,
      // Not in bun-types for Bun.listen, which takes it (SO_REUSEPORT): rotation binds the port twice.
      ...{ reusePort: true },
      // A client may half-close once its request is sent: it still gets its answer.
      allowHalfOpen: true,
      tls: {
        cert: material.cert,
        key: material.key,
        // Without client CAs no client is asked for a certificate, so no trust list is ever read;
        // but a context given no `ca` gets Bun's default, Mozilla's root list, parsed into every
        // process (~2 MB resident). The listener's own certificate stands in for it, unused.
        ca: material.ca ?? material.cert,
        requestCert: material.requestCert,
        rejectUnauthorized: material.rejectUnauthorized,
        ALPNProtocols: alpn,
        // Not in bun-types: Bun.listen takes the protocol version number node:tls's minVersion maps to.
        ...{ minVersion: tls12 },
      },
      socket: { ...handlers, handshake: (socket, success, err) => onHandshake(socket, success, err, material.rejectUnauthorized) },
    };
    return Bun.listen(listenOptions);
  };
  let listener = bind(options.port, options.material);
  const port = listener.port;
  const retiring = new Set<TCPSocketListener<SocketState | undefined>>();
  return {
    port,
    rotate(material) {
      const replaced = listener;
      listener = bind(port, material);
      retiring.add(replaced);
      setImmediate(() => {
        replaced.stop(false);
        retiring.delete(replaced);
      });
    },
    stop() {
      for (const old of retiring) old.stop(false);
      listener.stop(false);
      protocols.http1?.stop();
      protocols.h2.stop();
    },
    kill() {
      for (const old of retiring) old.stop(true);
      listener.stop(true);
      protocols.http1?.kill();
      protocols.h2.kill();
    },
  };
}

type Handlers = Omit<SocketHandler<SocketState | undefined>, "handshake"> & {
  handshake(socket: Socket<SocketState | undefined>, success: boolean, authorizationError: Error | null, certRequired: boolean): void;
};

function socketHandlers<H1 extends PlainConnection, H2 extends PlainConnection>(options: TlsListenOptions, protocols: TlsProtocols<H1, H2>): Handlers {
  const { name, failures, onHandshakeTimeout, onCertificateRefused } = options;
  const { handshakeTimeoutMs } = options;
  // Bun's socket timeouts count whole seconds on a coarse tick: timeout(1) fires anywhere from
  // 0.5 s to 4 s after it is set (0 would turn the deadline off). A client is never cut before its
  // whole request_header_timeout: a timeout that fires early is set again for what is left.
  const rearm = (socket: Socket<SocketState | undefined>, leftMs: number) => socket.timeout(Math.max(1, Math.ceil(leftMs / 1000)));
  const openedAt = new WeakMap<Socket<SocketState | undefined>, number>();
  return {
    // A client that connects and never finishes its handshake would hold the socket forever, unseen
    // by max_connections: the connection sets count it only once it has a protocol.
    open: (socket) => {
      openedAt.set(socket, performance.now());
      rearm(socket, handshakeTimeoutMs);
    },
    timeout(socket) {
      if (socket.data) return;
      const left = handshakeTimeoutMs - (performance.now() - (openedAt.get(socket) ?? 0));
      if (left > 0) return rearm(socket, left);
      onHandshakeTimeout();
      socket.terminate();
    },
    handshake(socket, success, authorizationError, certRequired) {
      if (!success || (authorizationError !== null && certRequired)) {
        // Bun closes the socket itself after a failed handshake or a refused certificate.
        const reason = failures.record(name, authorizationError ?? new Error("TLS handshake failed"), socket.remoteAddress);
        if (reason !== undefined && certificateRefusals.has(reason)) onCertificateRefused(reason, socket.remoteAddress);
        return;
      }
      socket.timeout(0);
      socket.setNoDelay(true);
      const conns = (socket.alpnProtocol === "h2" || !protocols.http1 ? protocols.h2 : protocols.http1) as PlainConnections<PlainConnection>;
      const untyped = socket as Socket<unknown>;
      const transport = new BunTransport(untyped, new TlsPeer(untyped, (authorizationError as { code?: string } | null)?.code));
      socket.data = { transport, conn: conns.adopt(transport), conns };
    },
    data: (socket, data) => socket.data?.conn.onData(data),
    drain: (socket) => {
      const state = socket.data;
      if (state?.transport.drained()) state.conn.onDrain();
    },
    end: (socket) => socket.data?.conn.onEnd(),
    close: (socket) => socket.data?.conns.closed(socket.data.conn),
    error: (socket) => socket.data?.conns.closed(socket.data.conn),
  };
}
