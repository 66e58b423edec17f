import { describe, expect, it } from "bun:test";
import { configProblems } from "./helpers/config-problems.ts";

const problemsOf = configProblems;

const http = (backend: object) => ({ http: { backends: [{ name: "web", host: { dns_name: "localhost", port: 8080 }, ...backend }] } });
const grpc = (backend: object) => ({ grpc: { backends: [{ name: "g1", host: { dns_name: "localhost", port: 8080 }, ...backend }] } });

describe("health config validation names the field path", () => {
  const cases: Array<[string, unknown, string]> = [
    ["a percentage over 100", http({ outlier_detection: { max_ejection_percent: 101 } }), "http.backends[0].outlier_detection.max_ejection_percent: must be 0-100"],
    ["zero consecutive failures", http({ outlier_detection: { consecutive_failures: 0 } }), "http.backends[0].outlier_detection.consecutive_failures: must be at least 1"],
    ["a zero base ejection time", grpc({ outlier_detection: { base_ejection_time: "0s" } }), "grpc.backends[0].outlier_detection.base_ejection_time: must be longer than 0s"],
    ["a negative max ejection time", http({ outlier_detection: { max_ejection_time: "-5s" } }), "http.backends[0].outlier_detection.max_ejection_time: must be longer than 0s"],
    ["a health path without a leading slash", http({ health_check: { http: { path: "healthz" } } }), 'http.backends[0].health_check.http.path: must start with "/"'],
    ["a health path with a space", http({ health_check: { http: { path: "/a b" } } }), "http.backends[0].health_check.http.path: must be printable ASCII without spaces"],
    ["a zero interval", http({ health_check: { http: { path: "/" }, interval: "0s" } }), "http.backends[0].health_check.interval: must be longer than 0s"],
    ["a zero timeout", grpc({ health_check: { grpc: {}, timeout: "0s" } }), "grpc.backends[0].health_check.timeout: must be longer than 0s"],
    ["a zero healthy threshold", http({ health_check: { http: { path: "/" }, healthy_threshold: 0 } }), "http.backends[0].health_check.healthy_threshold: must be at least 1"],
    ["a zero unhealthy threshold", grpc({ health_check: { grpc: {}, unhealthy_threshold: 0 } }), "grpc.backends[0].health_check.unhealthy_threshold: must be at least 1"],
    ["a gRPC check on an HTTP backend", http({ health_check: { grpc: {} } }), "http.backends[0].health_check.grpc: an HTTP backend is checked with http: { path }"],
    ["an HTTP check on a gRPC backend", grpc({ health_check: { http: { path: "/" } } }), "grpc.backends[0].health_check.http: a gRPC backend is checked with grpc: { service }"],
    ["a check of nothing", http({ health_check: { interval: "5s" } }), "http.backends[0].health_check: an HTTP backend is checked with http: { path }"],
  ];
  for (const [what, config, expected] of cases) {
    it(`rejects ${what}`, () => {
      expect(problemsOf(config).join("\n")).toContain(expected);
    });
  }

  it("accepts both, fully set", () => {
    const outlier = { consecutive_failures: 3, base_ejection_time: "10s", max_ejection_percent: 100, max_ejection_time: "60s" };
    const check = { interval: "2s", timeout: "0.5s", healthy_threshold: 1, unhealthy_threshold: 2 };
    expect(problemsOf(http({ outlier_detection: outlier, health_check: { http: { path: "/healthz?full=1" }, ...check } }))).toEqual([]);
    expect(problemsOf(grpc({ outlier_detection: outlier, health_check: { grpc: { service: "a.B" }, ...check } }))).toEqual([]);
  });
});
