import type * as http2 from "node:http2";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager, type GrpcTransportOptions } from "@connectrpc/connect-node";
import { KedgeError } from "../errors.js";
import type { KedgeGrpcTransportOptions } from "./options.js";
import type { KedgeRouting, KedgeTarget } from "./routing.js";

/**
 * The client's HTTP/2 sessions to kedges, one per kedge and identity, shared by every transport of
 * the client whatever service it calls: a kedge routes each call by its :authority, so one
 * connection carries calls for all the services behind it.
 */
export class KedgeGrpcSessions {
  private readonly sessions = new Map<string, Http2SessionManager>();
  private closed = false;

  session(target: KedgeTarget): Http2SessionManager {
    if (this.closed) throw new ConnectError("the kedge client is closed", Code.Unavailable);
    let session = this.sessions.get(target.poolKey);
    if (!session) {
      // No servername: http2.connect takes it from the kedge's URL, and leaves it out for an IP.
      const tls: http2.SecureClientSessionOptions = { ca: [...target.tls.ca], cert: target.tls.cert, key: target.tls.key };
      session = new Http2SessionManager(target.kedge.origin, {}, tls);
      this.sessions.set(target.poolKey, session);
    }
    return session;
  }

  close(): void {
    this.closed = true;
    for (const session of this.sessions.values()) session.abort();
    this.sessions.clear();
  }
}

/** The library's own refusals (an unmapped host, a credential it cannot get) as the gRPC error a Connect caller handles. */
function asConnectError(e: unknown): unknown {
  if (!(e instanceof KedgeError)) return e;
  return new ConnectError(e.message, Code.Unavailable, undefined, undefined, e);
}

/**
 * Connect's view of one destination: it asks for streams on `authority` (baseUrl's origin) and
 * gets them on the shared session to the kedge routing maps that host to, with the route's
 * credentials fresh for each call and :authority naming the destination, which kedge routes on.
 */
class KedgeDestination {
  readonly authority: string;
  private readonly host: string;
  private readonly port: number | undefined;
  private readonly hostPort: string;
  private readonly sessionOf = new WeakMap<http2.ClientHttp2Stream, Http2SessionManager>();

  constructor(
    baseUrl: URL,
    private readonly routing: KedgeRouting,
    private readonly sessions: KedgeGrpcSessions,
  ) {
    this.authority = baseUrl.origin;
    this.host = baseUrl.hostname;
    this.port = baseUrl.port === "" ? undefined : Number(baseUrl.port);
    this.hostPort = baseUrl.host;
  }

  async request(method: string, path: string, headers: http2.OutgoingHttpHeaders, options: Omit<http2.ClientSessionRequestOptions, "signal">): Promise<http2.ClientHttp2Stream> {
    let target;
    try {
      target = await this.routing.target(this.host, this.port, "grpc");
    } catch (e) {
      throw asConnectError(e);
    }
    if (target.kind !== "kedge") throw new ConnectError(`${this.host} is not a kedge destination`, Code.Unavailable);
    const session = this.sessions.session(target);
    const stream = await session.request(method, path, { ...headers, ...target.headers, ":authority": this.hostPort }, options);
    this.sessionOf.set(stream, session);
    return stream;
  }

  notifyResponseByteRead(stream: http2.ClientHttp2Stream): void {
    this.sessionOf.get(stream)?.notifyResponseByteRead(stream);
  }
}

/** A Connect gRPC transport (HTTP/2) to the service at options.baseUrl, through the kedge its host maps to. */
export function createKedgeGrpcTransport(routing: KedgeRouting, sessions: KedgeGrpcSessions, options: KedgeGrpcTransportOptions): Transport {
  const destination = new KedgeDestination(new URL(options.baseUrl), routing, sessions);
  const transportOptions: GrpcTransportOptions = { ...options, sessionManager: destination };
  return createGrpcTransport(transportOptions);
}
