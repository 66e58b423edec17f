import * as v from "valibot";

/** A google.protobuf.Duration field that, when set, must be longer than zero. */
const positiveDuration = v.optional(
  v.pipe(
    v.looseObject({ seconds: v.bigint(), nanos: v.number() }),
    v.check((d) => d.seconds > 0n || (d.seconds === 0n && d.nanos > 0), "must be longer than 0s"),
  ),
);

const threshold = v.optional(v.pipe(v.number(), v.minValue(1, "must be at least 1")));

const outlierDetection = v.optional(
  v.looseObject({
    consecutiveFailures: threshold,
    baseEjectionTime: positiveDuration,
    maxEjectionPercent: v.optional(v.pipe(v.number(), v.maxValue(100, "must be 0-100"))),
    maxEjectionTime: positiveDuration,
  }),
);

// The path goes into the request line as it is.
const checkPath = v.pipe(v.string(), v.startsWith("/", 'must start with "/"'), v.regex(/^[\x21-\x7e]*$/, "must be printable ASCII without spaces"));

const checks = {
  http: v.variant("case", [v.looseObject({ case: v.literal("http"), value: v.looseObject({ path: checkPath }) })], "an HTTP backend is checked with http: { path }"),
  grpc: v.variant("case", [v.looseObject({ case: v.literal("grpc"), value: v.looseObject({ service: v.string() }) })], "a gRPC backend is checked with grpc: { service } (grpc.health.v1)"),
};

/** The outlier_detection and health_check fields of an HTTP or a gRPC backend, for its valibot schema. */
export function backendHealthFields(kind: "http" | "grpc") {
  return {
    outlierDetection,
    healthCheck: v.optional(
      v.looseObject({
        check: checks[kind],
        interval: positiveDuration,
        timeout: positiveDuration,
        healthyThreshold: threshold,
        unhealthyThreshold: threshold,
      }),
    ),
  };
}
