import type { IncomingHttpHeaders } from "node:http2";
import type { ClientStream } from "../proxy/client-stream.js";
import type { KedgeError } from "../errors.js";
import { forwardCall } from "../proxy/grpc.js";
import { answerStatus, GrpcStatus, openCall } from "../proxy/grpc-call.js";
import { requestIdFrom } from "../proxy/request.js";
import { isIP } from "node:net";
import { parseHostPort } from "../net/host-port.js";
import { copyFields } from "../net/fields.js";
import { routeLabel } from "../observe/metrics.js";
import { noteDestination } from "./access-fields.js";
import { destination, winchRequestId, type WinchContext } from "./context.js";
import type { Injection } from "./credentials.js";

function statusFor(err: KedgeError): number {
  if (err.type === "unknown-host" || err.type === "ip-literal") return GrpcStatus.UNIMPLEMENTED;
  if (err.type === "auth-source") return GrpcStatus.UNAUTHENTICATED;
  return GrpcStatus.UNAVAILABLE;
}

/**
 * A call's authority is the CONNECT's target when it names no host winch could map (missing,
 * malformed or an IP literal) and the call came through a tunnel: the client meant that target.
 */
function tunnelTarget(stream: ClientStream, tunnelTargets: WeakMap<object, string>): string | undefined {
  const socket = stream.session?.socket;
  return socket ? tunnelTargets.get(socket) : undefined;
}

/**
 * One call on winch's h2c gRPC port, or in a CONNECT tunnel that carries HTTP/2: the client's
 * target is the :authority; winch maps it and forwards the call to that cluster's kedge over TLS,
 * authority unchanged, with the route's credentials as metadata.
 */
export function winchGrpc(ctx: WinchContext, stream: ClientStream, headers: IncomingHttpHeaders, tunnelTargets: WeakMap<object, string>): void {
  const { call, refuse } = openCall(ctx.metrics, stream, headers, statusFor);
  try {
    const authority = ((headers[":authority"] ?? headers.host) as string | undefined) ?? "";
    const requestId = requestIdFrom(headers, winchRequestId);
    noteDestination(call.obs, authority, undefined, true, requestId);
    let hostPort = parseHostPort(authority, 0);
    const target = !hostPort || isIP(hostPort.host) ? tunnelTarget(stream, tunnelTargets) : undefined;
    if (target !== undefined) {
      // The call goes on with the target as its :authority; its decoded fields are read-only (RecentBlocks).
      headers = copyFields(headers);
      headers[":authority"] = target;
      hostPort = parseHostPort(target, 0) ?? hostPort;
    }
    if (!hostPort) {
      call.error("unknown-host");
      return answerStatus(stream, GrpcStatus.UNIMPLEMENTED, `${JSON.stringify(authority.slice(0, 100))} is not a kedge destination`, call);
    }
    const to = destination(ctx, hostPort.host, hostPort.port || undefined, "grpc");
    if (to.kind !== "kedge") throw new Error("unreachable: gRPC never goes direct");
    noteDestination(call.obs, authority, to, true, requestId);
    call.route = routeLabel(to.mapping.routeIndex);
    const { kedge } = to.mapping;
    const go = (injection: Injection) => {
      call.backendName = kedge.host;
      const set = { ...injection.headers, "x-kedge-request-id": requestId };
      forwardCall(stream, headers, call, ctx.upstreams.grpcTo(kedge, injection.clientCert), set);
    };
    const injection = ctx.injector.inject(to.mapping);
    if (injection instanceof Promise) injection.then(go, refuse);
    else go(injection);
  } catch (e) {
    refuse(e);
  }
}
