import type { ServerConfig } from "../gen/kedge/config/v1/server_pb.js";
import { defaultBindAddress } from "../config/validate-exposure.js";
import { StartError } from "../errors.js";

/**
 * Fails when another process already listens on one of kedge's data ports. kedge's TLS listeners
 * (and every listener of a worker) bind with SO_REUSEPORT, so that a certificate rotation or a
 * sibling worker can bind the same port; the kernel would then split connections between this
 * kedge and a stale one (or a second kedge started by mistake) without an error. A bind without
 * SO_REUSEPORT fails with EADDRINUSE whatever flags the other socket has: tried and closed at once.
 * Ports 0 (any free port) need no claim.
 */
export function claimDataPorts(server: ServerConfig): void {
  const host = server.bindAddress || defaultBindAddress;
  const named: Array<[string, number | undefined]> = [
    ["http_port", server.httpPort],
    ["http_tls_port", server.httpTlsPort],
    ["grpc_tls_port", server.grpcTlsPort],
    ["h2c_port", server.h2cPort],
  ];
  for (const [field, port] of named) {
    if (!port) continue;
    let probe: { stop(closeActive?: boolean): void } | undefined;
    try {
      probe = Bun.listen({ hostname: host, port, socket: { data() {} } });
    } catch (e) {
      // Any other failure (an address not on this host, a privileged port) is the real bind's to report.
      if ((e as { code?: string }).code === "EADDRINUSE") throw new StartError(`server.${field} ${host}:${port} is in use by another process (another kedge still running?)`);
    } finally {
      probe?.stop(true);
    }
  }
}
