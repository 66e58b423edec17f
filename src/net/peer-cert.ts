import type { TLSSocket } from "node:tls";

/** Who a verified client certificate says the caller is. */
export interface CertIdentity {
  /** "CN=alice,O=Example" in the certificate's order. */
  readonly subject: string;
  readonly commonName: string;
  /** DNS names, URIs (SPIFFE IDs) and emails from subjectAltName. */
  readonly sans: readonly string[];
  /** SHA-256 fingerprint, "AB:CD:…". */
  readonly fingerprint: string;
}

/** What the listener knows of the client certificate. */
export type PeerCert =
  | { readonly verified: true; readonly identity: CertIdentity }
  | { readonly verified: false; readonly reason: string };

const cache = new WeakMap<object, PeerCert | null>();

/**
 * The client certificate of a TLS connection, read once per connection. Undefined when the
 * connection is not TLS or the client sent no certificate; `verified: false` when it sent one the
 * CA bundle does not vouch for (expired, another CA), which must never count as an identity.
 */
export function peerCertOf(socket: object | undefined | null): PeerCert | undefined {
  if (!socket) return undefined;
  const known = cache.get(socket);
  if (known !== undefined) return known ?? undefined;
  const found = readPeerCert(socket as Partial<TLSSocket>);
  cache.set(socket, found ?? null);
  return found;
}

function readPeerCert(socket: Partial<TLSSocket>): PeerCert | undefined {
  if (typeof socket.getPeerCertificate !== "function") return undefined;
  const cert = socket.getPeerCertificate(false);
  if (!cert || !cert.fingerprint256) return undefined;
  if (!socket.authorized) return { verified: false, reason: String(socket.authorizationError ?? "certificate not trusted") };
  const subjectFields = (cert.subject ?? {}) as unknown as Record<string, string | string[]>;
  const subject = Object.entries(subjectFields)
    .flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => `${k}=${x}`))
    .join(",");
  const cn = subjectFields.CN;
  return {
    verified: true,
    identity: {
      subject,
      commonName: Array.isArray(cn) ? (cn[0] ?? "") : (cn ?? ""),
      sans: parseSans(cert.subjectaltname ?? ""),
      fingerprint: cert.fingerprint256,
    },
  };
}

/** "DNS:a, URI:spiffe://x, email:e" → ["a", "spiffe://x", "e"]; IP SANs are left out (not names). */
function parseSans(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(", ")) {
    const colon = part.indexOf(":");
    if (colon < 0) continue;
    const kind = part.slice(0, colon);
    if (kind === "DNS" || kind === "URI" || kind === "email") out.push(part.slice(colon + 1));
  }
  return out;
}
