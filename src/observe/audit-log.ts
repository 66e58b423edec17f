import type { AuditLogConfig } from "../gen/kedge/config/v1/observability_pb.js";
import { AccessLogWriter, identityOf, loggedHost, loggedPath } from "./access-log.js";
import { logProcessFields } from "./log.js";

/** The request or call an access decision is about, as its audit line names it. */
export interface DecisionSubject {
  readonly requestId: string | undefined;
  /** The client's IP address (the TCP peer). */
  readonly address: string;
  readonly protocol: string;
  /** HTTP: the method; gRPC: undefined. */
  readonly method: string | undefined;
  readonly authority: string | undefined;
  /** HTTP: the path (logged without its query); gRPC: /service/method. */
  readonly path: string;
  /** The route's label (its index, "adhoc", "none", or "admin" on the admin port). */
  route: string;
  backend: string;
}

/**
 * The audit stream: one JSON line per access decision, apart from the access log (stdout or its
 * own file, reopened on SIGUSR1). Denies are always written, allows sampled. Lines name callers by
 * subject only, never by a credential. Off until configured; `enabled` is all the request path
 * reads when it is off.
 */
export class AuditLog {
  enabled = false;
  private allowedSampleRate = 1;
  private readonly writer = new AccessLogWriter("audit log");

  configure(config: AuditLogConfig | undefined): void {
    this.enabled = config?.enabled ?? false;
    this.allowedSampleRate = config?.allowedSampleRate ?? 1;
    this.writer.to(this.enabled ? (config?.path ?? "") : "");
  }

  /** An allow decision is to be written (sampled by allowed_sample_rate). */
  sampleAllow(): boolean {
    const rate = this.allowedSampleRate;
    return this.enabled && (rate >= 1 || (rate > 0 && Math.random() < rate));
  }

  /**
   * Writes one decision. `reason`: for a deny the error type, for an allow what allowed it;
   * `detail`: the message the caller got; `identity`: what the access decision resolved with,
   * `socket`: the client connection (for its verified certificate).
   */
  decision(subject: DecisionSubject, decision: "allow" | "deny", reason: string, detail: string | undefined, identity: unknown, socket: object | null | undefined): void {
    const who = identityOf(identity, socket);
    const grpc = subject.protocol === "grpc";
    this.writer.write(
      JSON.stringify({
        audit: true,
        time: new Date().toISOString(),
        ...logProcessFields(),
        request_id: subject.requestId,
        decision,
        reason,
        detail,
        identity: { cert_subject: who.cert, token_subject: who.token },
        client: subject.address,
        protocol: subject.protocol,
        method: subject.method,
        host: loggedHost(subject.authority),
        path: grpc ? undefined : loggedPath(subject.path),
        grpc_method: grpc ? loggedPath(subject.path) : undefined,
        route: subject.route,
        backend: subject.backend,
      }),
    );
  }

  /**
   * A client certificate refused in the TLS handshake (tls_client_cert_required): no request was
   * read, so the line names the listener and the reason instead of a route.
   */
  handshakeRefused(listener: string, reason: string, address: string | undefined): void {
    if (!this.enabled) return;
    this.writer.write(
      JSON.stringify({
        audit: true,
        time: new Date().toISOString(),
        ...logProcessFields(),
        decision: "deny",
        reason: "unauthorized",
        detail: `TLS handshake refused: ${reason}`,
        identity: {},
        client: address ?? "",
        protocol: "tls",
        listener,
        route: "none",
        backend: "none",
      }),
    );
  }

  /** After a log rotator renamed the file: the next lines go to a new one at the path. False: no file (stdout, or off). */
  reopen(): boolean {
    return this.writer.reopen();
  }

  close(): void {
    this.writer.close();
  }
}
