import { describe, expect, it } from "bun:test";
import { configProblems } from "./helpers/config-problems.ts";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../src/config/load.ts";
import { compileRetryPolicy } from "../src/backend/retry-policy.ts";

// Routes' `retry` in the config file: how it loads, and every bad value named by its field path.

const dir = mkdtempSync(join(tmpdir(), "kedge-retry-config-"));

function problemsOf(retry: unknown, kind: "http" | "grpc" = "http"): string[] {
  return configProblems({ [kind]: { backends: [{ name: "web", static: { addresses: ["127.0.0.1:80"] } }], routes: [{ backend_name: "web", retry }] } });
}

describe("retry config", () => {
  it("loads YAML with unquoted status codes in `on`", () => {
    const path = join(dir, "c.yaml");
    writeFileSync(
      path,
      "grpc:\n  backends: [{ name: web, static: { addresses: ['127.0.0.1:80'] } }]\n  routes:\n    - backend_name: web\n      retry: { attempts: 3, on: [reset, 503, 504], per_try_timeout: 2s, budget_percent: 50 }\n",
    );
    const policy = compileRetryPolicy(loadConfig({ configFile: path }).grpc!.routes[0].retry)!;
    expect([policy.attempts, [...policy.on], policy.perTryTimeoutMs, policy.budgetPercent]).toEqual([3, ["reset", "503", "504"], 2000, 50]);
  });

  it("accepts the valid range", () => {
    expect(problemsOf({ attempts: 1, on: ["connect-failure", "refused-stream", "reset", 502, "503", 504], per_try_timeout: "0.1s", budget_percent: 0 })).toEqual([]);
    expect(problemsOf({ attempts: 10, budget_percent: 100 }, "grpc")).toEqual([]);
    expect(problemsOf({})).toEqual([]);
  });

  it("rejects bad values with their field paths", () => {
    expect(problemsOf({ attempts: 0 })).toEqual(["http.routes[0].retry.attempts: must be 1-10, got 0"]);
    expect(problemsOf({ attempts: 11 }, "grpc")).toEqual(["grpc.routes[0].retry.attempts: must be 1-10, got 11"]);
    expect(problemsOf({ on: ["reset", "500", true] })).toEqual([
      'http.routes[0].retry.on[1]: must be one of connect-failure, refused-stream, reset, 502, 503, 504, got "500"',
      "http.routes[0].retry.on[2]: must be one of connect-failure, refused-stream, reset, 502, 503, 504, got true",
    ]);
    expect(problemsOf({ budget_percent: 101 })).toEqual(["http.routes[0].retry.budget_percent: must be 0-100, got 101"]);
    expect(problemsOf({ per_try_timeout: "0s" })).toEqual(["http.routes[0].retry.per_try_timeout: must be at least 1ms"]);
    expect(problemsOf({ per_try_timeout: "-1s" })).toEqual(["http.routes[0].retry.per_try_timeout: must be at least 1ms"]);
    expect(problemsOf({ tries: 2 }).some((p) => p.includes("http.routes[0].retry.tries: unknown field"))).toBe(true);
  });
});
