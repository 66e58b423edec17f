import { readFileSync } from "node:fs";
import type { ServerConfig } from "../gen/kedge/config/v1/server_pb.js";

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** Client CAs; clients are asked for a certificate only when there are some. */
  ca: Buffer[] | undefined;
  requestCert: boolean;
  /** A missing or untrusted client certificate fails the handshake. */
  rejectUnauthorized: boolean;
}

/**
 * The listener's TLS material. With client CAs, clients are asked for a certificate; a missing or
 * untrusted one fails the handshake only when required, otherwise the request path refuses an
 * untrusted one and treats a missing one as no identity.
 */
export function tlsFiles(server: ServerConfig): TlsMaterial {
  const clientCas = server.tlsClientCaFiles.map((f) => readFileSync(f));
  return {
    cert: readFileSync(server.tlsCertFile),
    key: readFileSync(server.tlsKeyFile),
    ca: clientCas.length > 0 ? clientCas : undefined,
    requestCert: clientCas.length > 0,
    rejectUnauthorized: clientCas.length > 0 && server.tlsClientCertRequired,
  };
}
