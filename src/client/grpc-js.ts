import * as grpc from "@grpc/grpc-js";
import { isIP } from "node:net";
import { checkServerIdentity as tlsCheckServerIdentity, type PeerCertificate } from "node:tls";
import { KedgeError } from "../errors.js";
import type { GrpcJsTarget } from "./options.js";
import type { KedgeRouting, KedgeTarget } from "./routing.js";

/**
 * Call credentials add to the caller's metadata rather than replace it, so a caller's own
 * `authorization` would travel beside the route's and a backend reading the first value would get
 * the caller's. The route's credentials replace the caller's, as winch does.
 */
function dropping(names: readonly string[]): grpc.Interceptor {
  const requester: grpc.Requester = {
    start(metadata, listener, next) {
      for (const name of names) metadata.remove(name);
      next(metadata, listener);
    },
  };
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), requester);
}

/**
 * TLS to the kedge with the route's identity, verifying the kedge's own name: grpc-js would check
 * the default authority (the destination) otherwise. A named kedge is also the SNI (an SNI-routing
 * load balancer in front of kedge needs it). An IP cannot be an SNI (Bun refuses it, Node warns),
 * so for an IP the destination's host is sent and only the check is against the IP.
 */
function kedgeTls(target: KedgeTarget, destinationHost: string): { credentials: grpc.ChannelCredentials; nameOptions: grpc.ChannelOptions } {
  const ca = Buffer.from(target.tls.ca.join("\n"));
  const key = target.tls.key === undefined ? null : Buffer.from(target.tls.key);
  const cert = target.tls.cert === undefined ? null : Buffer.from(target.tls.cert);
  const name = target.kedge.hostname.replace(/^\[|\]$/g, "");
  if (!isIP(name)) return { credentials: grpc.credentials.createSsl(ca, key, cert), nameOptions: { "grpc.ssl_target_name_override": name } };
  const checkServerIdentity = (_host: string, peer: PeerCertificate) => tlsCheckServerIdentity(name, peer);
  return { credentials: grpc.credentials.createSsl(ca, key, cert, { checkServerIdentity }), nameOptions: { "grpc.ssl_target_name_override": destinationHost } };
}

/** A gRPC target as grpc-js reads it, `host:port`, `dns:host:port` or `dns:///host:port`, as host and port. */
export function parseGrpcTarget(target: string): { host: string; port: number | undefined; authority: string } {
  const authority = target.replace(/^dns:(\/\/[^/]*\/)?/, "");
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(authority);
  if (!m) throw new KedgeError("bad-request", 400, `${target} is not a gRPC target of the form host:port or dns:///host:port`);
  return { host: m[1].replace(/^\[|\]$/g, ""), port: m[2] === undefined ? undefined : Number(m[2]), authority };
}

/**
 * grpc-js pools connections by equal credentials and options, so handing out the same object for
 * the same destination lets every client made from it share one connection to the kedge.
 */
export class GrpcJsTargets {
  private readonly made = new Map<string, GrpcJsTarget>();

  constructor(private readonly routing: KedgeRouting) {}

  /**
   * Rejects with KedgeError unknown-host when no route maps the target: no channel can be made.
   * The identity is the one the route has now; credentials headers are fetched again for every call.
   */
  async target(target: string): Promise<GrpcJsTarget> {
    const { host, port, authority } = parseGrpcTarget(target);
    const kedge = await this.routing.target(host, port, "grpc");
    if (kedge.kind !== "kedge") throw new KedgeError("unknown-host", 502, `${host} is not a kedge destination`);
    if (kedge.kedge.protocol !== "https:") throw new KedgeError("bad-request", 400, `${host} maps to ${kedge.kedge.origin}: grpc-js sends call credentials only over TLS, so the kedge URL must be https`);
    const key = `${authority}|${kedge.poolKey}`;
    const made = this.made.get(key);
    if (made) return made;
    const perCall = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
      this.routing.target(host, port, "grpc").then(
        (fresh) => {
          const metadata = new grpc.Metadata();
          if (fresh.kind === "kedge") for (const [name, value] of Object.entries(fresh.headers)) metadata.set(name, value);
          callback(null, metadata);
        },
        (e: Error) => callback(Object.assign(new Error(e.message), { code: grpc.status.UNAVAILABLE })),
      );
    });
    const { credentials, nameOptions } = kedgeTls(kedge, host);
    const result: GrpcJsTarget = {
      address: `${kedge.kedge.hostname}:${kedge.kedge.port || 443}`,
      credentials: grpc.credentials.combineChannelCredentials(credentials, perCall),
      options: { "grpc.default_authority": authority, ...nameOptions, interceptors: [dropping(Object.keys(kedge.headers))] },
    };
    this.made.set(key, result);
    return result;
  }
}
