import type { GrpcBackend as GrpcBackendConfig } from "../gen/kedge/config/v1/backend_pb.js";
import { H2Session, type H2SessionOptions, type H2SessionStats } from "../upstream/h2-session.js";
import { Backend } from "./backend.js";
import { balancerFor } from "./balancer.js";
import { defaults } from "../config/backend-defaults.js";
import { durationMs } from "../config/duration.js";
import { checkAuthority, sniName, tierSources, tlsMaterial, type TlsMaterial } from "./http-backend.js";
import { grpcProbe } from "./grpc-probe.js";
import { tierConfigs, type TierConfig } from "./kedge-tier.js";

function grpcTls(tier: TierConfig, host: string, material: TlsMaterial | undefined): H2SessionOptions["tls"] {
  const s = tier.security;
  if (!s) return undefined;
  return { rejectUnauthorized: !s.insecureSkipVerify, serverName: s.serverName || sniName(tier, host), ...tlsMaterial(s, tier.hop ? undefined : material) };
}

/** A named gRPC backend: endpoints from its resolver, each with one warm HTTP/2 session. */
export class GrpcBackend extends Backend<H2SessionStats, H2Session> {
  readonly connectTimeoutMs: number;

  constructor(readonly config: GrpcBackendConfig, material?: TlsMaterial) {
    const connectTimeoutMs = durationMs(config.timeouts?.connect, defaults.connectTimeoutMs);
    const tiers = tierConfigs(config);
    super(
      config.name,
      tierSources(tiers, (tier) => (host, port) => new H2Session({ host, port, tls: grpcTls(tier, host, material), connectTimeoutMs })),
      () => balancerFor(config.balancer),
      defaults.failureBackoffMs,
    );
    this.connectTimeoutMs = connectTimeoutMs;
    const check = config.healthCheck?.check;
    this.watchHealth(config, check?.case === "grpc" ? grpcProbe(check.value.service, checkAuthority(tiers)) : undefined);
  }
}
