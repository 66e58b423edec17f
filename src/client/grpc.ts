import type { Transport } from "@connectrpc/connect";
import type { GrpcJsTargets } from "./grpc-js.js";
import type { KedgeGrpcSessions } from "./grpc-transport.js";
import type { GrpcJsTarget, KedgeGrpcTransportOptions } from "./options.js";
import type { KedgeRouting } from "./routing.js";

type TransportModule = typeof import("./grpc-transport.js");

/**
 * The client's gRPC entry points. @connectrpc/connect-node and @grpc/grpc-js are the caller's
 * (optional peer dependencies: grpc-js checks `instanceof ChannelCredentials` against its own
 * copy), so they are loaded on first use: a fetch-only user needs neither installed.
 */
export class KedgeGrpc {
  private transports: Promise<{ module: TransportModule; sessions: KedgeGrpcSessions }> | undefined;
  private grpcJsTargets: Promise<GrpcJsTargets> | undefined;
  private closed = false;

  constructor(private readonly routing: KedgeRouting) {}

  /**
   * A Connect Transport (gRPC over HTTP/2) to options.baseUrl's service through the kedge its host
   * maps to. Returned at once; connect-node is loaded by the first call.
   */
  transport(options: KedgeGrpcTransportOptions): Transport {
    let inner: Promise<Transport> | undefined;
    const ready = () =>
      (inner ??= this.loadTransports().then(({ module, sessions }) => module.createKedgeGrpcTransport(this.routing, sessions, options)));
    return {
      unary: (...args) => ready().then((t) => t.unary(...args)),
      stream: (...args) => ready().then((t) => t.stream(...args)),
    };
  }

  /** `{ address, credentials, options }` for a @grpc/grpc-js client constructor; rejects with KedgeError for an unmapped target. */
  async grpcJs(target: string): Promise<GrpcJsTarget> {
    if (this.closed) throw new Error("kedge client is closed");
    this.grpcJsTargets ??= import("./grpc-js.js").then((m) => new m.GrpcJsTargets(this.routing), peerMissing("client.grpcJs()", "@grpc/grpc-js"));
    return (await this.grpcJsTargets).target(target);
  }

  /** Ends the sessions to the kedges: calls in flight and later ones fail. grpc-js channels are their clients' to close. */
  close(): void {
    this.closed = true;
    void this.transports?.then(({ sessions }) => sessions.close(), () => undefined);
  }

  private loadTransports(): Promise<{ module: TransportModule; sessions: KedgeGrpcSessions }> {
    return (this.transports ??= import("./grpc-transport.js").then((module) => {
      const sessions = new module.KedgeGrpcSessions();
      if (this.closed) sessions.close();
      return { module, sessions };
    }, peerMissing("client.grpcTransport()", "@connectrpc/connect-node")));
  }
}

/** Loading a peer failed: most likely the caller has not installed it. */
const peerMissing = (entry: string, peer: string) => (cause: unknown) => {
  throw new Error(`kedge/client: ${entry} could not load ${peer}, an optional peer dependency it needs (npm install ${peer})`, { cause });
};
