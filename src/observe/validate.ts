import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import { parseLineLevel } from "./access-log.js";

function rateProblem(rate: number | undefined): string | undefined {
  return rate === undefined || (rate >= 0 && rate <= 1) ? undefined : `must be between 0 and 1, got ${rate}`;
}

/** The observability section's problems, each with its field path. */
export function validateObservability(config: Config): string[] {
  const problems: string[] = [];
  const o = config.observability;
  if (!o) return problems;
  const logRate = rateProblem(o.accessLog?.sampleRate);
  if (logRate) problems.push(`observability.access_log.sample_rate: ${logRate}`);
  if (o.accessLog && parseLineLevel(o.accessLog.level) === undefined) {
    problems.push(`observability.access_log.level: must be info, warn or error, got ${JSON.stringify(o.accessLog.level)}`);
  }
  const auditRate = rateProblem(o.auditLog?.allowedSampleRate);
  if (auditRate) problems.push(`observability.audit_log.allowed_sample_rate: ${auditRate}`);
  const traceRate = rateProblem(o.tracing?.sampleRate);
  if (traceRate) problems.push(`observability.tracing.sample_rate: ${traceRate}`);
  const otlp = o.tracing?.otlp;
  if (otlp) {
    let url: URL | undefined;
    try {
      url = new URL(otlp.endpoint);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
      problems.push(`observability.tracing.otlp.endpoint: must be an http:// or https:// URL, got ${JSON.stringify(otlp.endpoint)}`);
    }
    for (const name of Object.keys(otlp.headers)) {
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) problems.push(`observability.tracing.otlp.headers: ${JSON.stringify(name)} is not a valid header name`);
    }
  }
  return problems;
}
