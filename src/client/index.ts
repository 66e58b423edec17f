import { kedgeFetch } from "./fetch.js";
import { KedgeGrpc } from "./grpc.js";
import type { FetchInput, GrpcJsTarget, KedgeClientOptions, KedgeGrpcTransport, KedgeGrpcTransportOptions } from "./options.js";
import { KedgeAgents } from "./pool.js";
import { KedgeRouting, loadClientConfig } from "./routing.js";

export { KedgeError, type KedgeErrorType } from "../errors.js";
export type { FetchInput, GrpcJsTarget, KedgeClientOptions, KedgeGrpcTransport, KedgeGrpcTransportOptions } from "./options.js";

/**
 * kedge's native client: winch's routes, auth sources and TLS identity inside the calling
 * service. One object per process is enough; it keeps the connections to each kedge warm.
 */
export class KedgeClient {
  /**
   * Where a host goes and what it carries; the transports share it.
   * @internal
   */
  readonly routing: KedgeRouting;
  private readonly agents = new KedgeAgents();
  private readonly grpc: KedgeGrpc;

  constructor(options: KedgeClientOptions) {
    this.routing = new KedgeRouting(loadClientConfig(options), { home: options.home, env: options.env, log: options.log, openBrowser: options.openBrowser });
    this.grpc = new KedgeGrpc(this.routing);
  }

  /**
   * WHATWG fetch through kedge. A mapped host's request goes to its kedge over TLS; kedge's own
   * refusals reject with a KedgeError (type, status, message), while the backend's answers, 4xx
   * and 5xx included, resolve as ordinary Responses. Network failures reject with a TypeError.
   */
  fetch(input: FetchInput, init?: RequestInit): Promise<Response> {
    return kedgeFetch(this.routing, this.agents, input, init);
  }

  /**
   * A @connectrpc/connect Transport (gRPC over HTTP/2) to the service at baseUrl, through the kedge
   * its host maps to; all the client's transports share one connection per kedge. An unmapped host
   * fails each call with Code.Unavailable, the KedgeError as its cause.
   */
  grpcTransport(options: KedgeGrpcTransportOptions): KedgeGrpcTransport {
    return this.grpc.transport(options);
  }

  /**
   * `{ address, credentials, options }` for a @grpc/grpc-js client constructor reaching target
   * (`host:port` or `dns:///host:port`) through its kedge. Rejects with KedgeError for an unmapped target.
   */
  grpcJs(target: string): Promise<GrpcJsTarget> {
    return this.grpc.grpcJs(target);
  }

  /** Closes the connections and stops the auth sources' background refreshes. */
  close(): void {
    this.agents.close();
    this.grpc.close();
    this.routing.close();
  }
}

/** Reads and validates the options (a ConfigError names each bad field) and returns a client. */
export function createKedgeClient(options: KedgeClientOptions): KedgeClient {
  return new KedgeClient(options);
}
