import { log } from "../observe/log.js";

/** Why a client's TLS handshake failed: a fixed set, so the metric's series stay bounded. */
export type TlsFailureReason =
  | "no_client_certificate"
  | "unknown_ca"
  | "certificate_expired"
  | "certificate_not_yet_valid"
  | "no_shared_alpn"
  | "protocol_version"
  | "not_tls"
  | "other";

// Failure codes in node:tls's spelling (BoringSSL reasons with ERR_SSL_, X509 verification results
// without), which the log line shows; found by experiment with node:tls and curl clients.
const reasonOfCode: Record<string, TlsFailureReason> = {
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: "no_client_certificate",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "unknown_ca",
  UNABLE_TO_GET_ISSUER_CERT: "unknown_ca",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unknown_ca",
  SELF_SIGNED_CERT_IN_CHAIN: "unknown_ca",
  DEPTH_ZERO_SELF_SIGNED_CERT: "unknown_ca",
  CERT_UNTRUSTED: "unknown_ca",
  CERT_SIGNATURE_FAILURE: "unknown_ca",
  CERT_HAS_EXPIRED: "certificate_expired",
  CERT_NOT_YET_VALID: "certificate_not_yet_valid",
  ERR_SSL_NO_APPLICATION_PROTOCOL: "no_shared_alpn",
  ERR_SSL_UNSUPPORTED_PROTOCOL: "protocol_version",
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: "protocol_version",
  ERR_SSL_HTTP_REQUEST: "not_tls",
  ERR_SSL_WRONG_VERSION_NUMBER: "not_tls",
};

// A peer that closes before its ClientHello (a load balancer's TCP health check, a port scan) is
// reported as ECONNRESET: routine, not a failed handshake, so neither counted nor logged.
const notHandshakes = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT"]);

/**
 * The failure's code in node:tls's spelling. Bun.listen's handshake handler gets X509 results as
 * codes, but BoringSSL's reasons as EPROTO with the reason last in the message
 * ("error:100000f0:SSL routines:OPENSSL_internal:UNSUPPORTED_PROTOCOL": ERR_SSL_UNSUPPORTED_PROTOCOL).
 */
function codeOf(err: Error & { code?: string }): string {
  const code = err.code ?? "";
  if (code !== "EPROTO") return code;
  const reason = err.message.slice(err.message.lastIndexOf(":") + 1);
  return reason ? `ERR_SSL_${reason}` : code;
}

/** The failures that are kedge refusing a caller's certificate: access decisions, for the audit log. */
export const certificateRefusals: ReadonlySet<TlsFailureReason> = new Set<TlsFailureReason>([
  "no_client_certificate",
  "unknown_ca",
  "certificate_expired",
  "certificate_not_yet_valid",
]);

const defaultLogIntervalMs = 60_000;

interface ReasonState {
  count: number;
  loggedAt: number;
  suppressed: number;
}

/**
 * Failed TLS handshakes on kedge's listeners, counted by listener and reason and logged at warn
 * with the peer's address: at most one line per listener and reason per interval, the next one
 * saying how many were left out, since a misconfigured client fleet retries many times a second.
 */
export class TlsHandshakeFailures {
  private readonly byKey = new Map<string, ReasonState & { listener: string; reason: TlsFailureReason }>();

  constructor(private readonly logIntervalMs = defaultLogIntervalMs) {}

  /** Counts and logs one failure; its reason, or undefined when it was no handshake at all. */
  record(listener: string, err: Error & { code?: string }, peer: string | undefined): TlsFailureReason | undefined {
    const code = codeOf(err);
    if (notHandshakes.has(code)) return undefined;
    const reason = reasonOfCode[code] ?? "other";
    const key = `${listener} ${reason}`;
    let state = this.byKey.get(key);
    if (!state) this.byKey.set(key, (state = { listener, reason, count: 0, loggedAt: -Infinity, suppressed: 0 }));
    state.count++;
    const now = performance.now();
    if (now - state.loggedAt < this.logIntervalMs) {
      state.suppressed++;
      return reason;
    }
    log.warn("TLS handshake failed", { listener, reason, peer: peer ?? "", error: code || err.message, suppressed: state.suppressed });
    state.loggedAt = now;
    state.suppressed = 0;
    return reason;
  }

  /** [listener, reason] → failures so far, for the metric. */
  *samples(): Iterable<[string[], number]> {
    for (const s of this.byKey.values()) yield [[s.listener, s.reason], s.count];
  }
}
