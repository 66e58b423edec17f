/** What a backend's unset config fields mean: timeouts, pool size and failure backoff. */
export const defaults = {
  connectTimeoutMs: 5_000,
  responseHeaderTimeoutMs: 60_000,
  idleTimeoutMs: 300_000,
  keepAliveMs: 60_000,
  tunnelIdleMs: 3_600_000,
  maxConnectionsPerEndpoint: 256,
  failureBackoffMs: 1_000,
  maxFailureBackoffMs: 30_000,
};
