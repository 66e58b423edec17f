import { create } from "@bufbuild/protobuf";
import { ObservabilityConfigSchema } from "../gen/kedge/config/v1/observability_pb.js";
import type { WinchServer } from "../gen/kedge/winch/v1/winch_pb.js";
import type { ProxyMetrics } from "../observe/metrics.js";

/**
 * winch's access log is kedge's (one observer, one writer, one line format plus winch's fields
 * from access-fields), on unless server.access_log.enabled is false. Applied at start and on
 * every reload; requests in flight write their line with the settings live when they end.
 */
export function configureAccessLog(metrics: ProxyMetrics, server: WinchServer | undefined): void {
  const accessLog = server?.accessLog;
  metrics.observer.configure(create(ObservabilityConfigSchema, { accessLog: { enabled: accessLog?.enabled ?? true } }), accessLog?.path ?? "");
}
