import { afterEach, describe, expect, it } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { Attempts, maxEndpointAttempts } from "../src/backend/attempts.ts";
import { HttpBackend } from "../src/backend/http-backend.ts";
import { compileRetryPolicy, minRetryConcurrency, type RetryPolicy, type RetryReason } from "../src/backend/retry-policy.ts";
import { HttpBackendSchema } from "../src/gen/kedge/config/v1/backend_pb.ts";
import { RetryPolicySchema } from "../src/gen/kedge/config/v1/retry_pb.ts";

// In-process: the retry policy's decisions in the attempt policy, on real backends whose static
// endpoints are never dialled.
const made: HttpBackend[] = [];

function backend(ports: number[]): HttpBackend {
  const b = new HttpBackend(create(HttpBackendSchema, { name: "b", resolver: { case: "static", value: { addresses: ports.map((p) => `127.0.0.1:${p}`) } } }));
  b.start();
  made.push(b);
  return b;
}

/** Records what the attempt policy reports, as a protocol's exchange would count it. */
class Counted extends Attempts<HttpBackend> {
  readonly counted: Array<[RetryReason, boolean]> = [];
  protected override retryCounted(reason: RetryReason, made: boolean): void {
    this.counted.push([reason, made]);
  }
}

function attemptsAt(b: HttpBackend, policy: RetryPolicy | undefined, deadlineAt?: number): Counted {
  const a = new Counted();
  a.backend = b;
  a.retryPolicy = policy;
  a.deadlineAt = deadlineAt;
  return a;
}

const policy = (p: Partial<RetryPolicy> = {}): RetryPolicy => ({ attempts: 3, on: new Set(["503", "reset", "504"]), perTryTimeoutMs: 0, budgetPercent: 100, ...p });

afterEach(() => {
  for (const b of made.splice(0)) b.close();
});

describe("retry policy", () => {
  it("compiles defaults: 2 attempts, connect-failure, refused-stream, reset and 503, a 20% budget", () => {
    expect(compileRetryPolicy(undefined)).toBeUndefined();
    const p = compileRetryPolicy(create(RetryPolicySchema, {}))!;
    expect([p.attempts, [...p.on], p.perTryTimeoutMs, p.budgetPercent]).toEqual([2, ["connect-failure", "refused-stream", "reset", "503"], 0, 20]);
    const set = compileRetryPolicy(
      create(RetryPolicySchema, { attempts: 4, on: [{ kind: { case: "numberValue", value: 502 } }, { kind: { case: "stringValue", value: "reset" } }], perTryTimeout: { seconds: 1n, nanos: 500_000_000 }, budgetPercent: 0 }),
    )!;
    expect([set.attempts, [...set.on], set.perTryTimeoutMs, set.budgetPercent]).toEqual([4, ["502", "reset"], 1500, 0]);
  });

  it("retries what `on` lists, up to `attempts` in all, on another endpoint while there is one", () => {
    const b = backend([1001, 1002]);
    const a = attemptsAt(b, policy());
    const first = a.next().endpoint;
    expect(a.retryAnswered("502", true)).toBe(false); // not listed
    expect(first.outstanding).toBe(1); // a refused retry leaves the attempt to pass its answer on
    expect(a.retryAnswered("503", true)).toBe(true);
    expect(first.outstanding).toBe(0);
    const second = a.next().endpoint;
    expect(second).not.toBe(first);
    expect(a.retryAnswered("timeout", true)).toBe(true); // a timeout is a 504
    // Every endpoint failed: the third attempt goes back to one of them.
    expect([first, second]).toContain(a.next().endpoint);
    expect(a.retryAnswered("503", true)).toBe(false);
    expect(a.counted).toEqual([
      ["503", true],
      ["timeout", true],
    ]);
  });

  it("never retries what cannot be sent again, without a policy, or past the caller's deadline", () => {
    const b = backend([1001, 1002]);
    const notResendable = attemptsAt(b, policy());
    notResendable.next();
    expect(notResendable.retryAnswered("503", false)).toBe(false);
    const none = attemptsAt(b, undefined);
    none.next();
    expect(none.retryAnswered("503", true)).toBe(false);
    const late = attemptsAt(b, policy(), performance.now() - 1);
    late.next();
    expect(late.retryAnswered("503", true)).toBe(false);
    expect(b.requestsInFlight).toBe(3); // a refusal leaves each attempt holding its endpoint
  });

  it("counts retries in flight per backend while their attempts hold an endpoint", () => {
    const b = backend([1001, 1002, 1003]);
    const a = attemptsAt(b, policy());
    a.next();
    expect(b.retriesInFlight).toBe(0);
    expect(a.retryAnswered("503", true)).toBe(true);
    a.next();
    expect(b.retriesInFlight).toBe(1);
    // kedge's own re-send of a retry is still the retry.
    expect(a.retry("dial", true)).toBe(true);
    expect(b.retriesInFlight).toBe(0);
    a.next();
    expect(b.retriesInFlight).toBe(1);
    a.release();
    expect(b.retriesInFlight).toBe(0);
    expect(b.requestsInFlight).toBe(0);
  });

  it("keeps retries in flight within budget_percent of the requests in flight, and always allows minRetryConcurrency", () => {
    const b = backend([1001, 1002]);
    const requests = Array.from({ length: 40 }, () => attemptsAt(b, policy({ budgetPercent: 10 })));
    for (const r of requests) r.next();
    // 10% of 40 requests in flight: 4 retries, then the budget refuses.
    const outcomes = requests.map((r) => {
      const retried = r.retryAnswered("503", true);
      if (retried) r.next();
      return retried;
    });
    expect(outcomes.filter(Boolean).length).toBe(4);
    expect(b.retriesInFlight).toBe(4);
    expect(requests[39].counted).toEqual([["503", false]]);
    for (const r of requests) r.release();
    // A quiet backend: minRetryConcurrency retries whatever the percentage.
    const few = Array.from({ length: 5 }, () => attemptsAt(b, policy({ budgetPercent: 0 })));
    for (const r of few) r.next();
    const quiet = few.map((r) => r.retryAnswered("503", true) && (r.next(), true));
    expect(quiet.filter(Boolean).length).toBe(minRetryConcurrency);
  });

  it("lets a policy that lists connect-failure go on where kedge's own limit stops", () => {
    const ports = [1001, 1002, 1003, 1004, 1005];
    const without = attemptsAt(backend(ports), undefined);
    let tries = 0;
    do {
      without.next();
      tries++;
    } while (without.retry("dial", true));
    expect(tries).toBe(maxEndpointAttempts);
    const within = attemptsAt(backend(ports), policy({ attempts: 2, on: new Set(["connect-failure"]) }));
    tries = 0;
    do {
      within.next();
      tries++;
    } while (within.retry("dial", true));
    expect(tries).toBe(maxEndpointAttempts + 1);
    expect(within.counted.map(([reason]) => reason)).toEqual(["connect-failure", "connect-failure", "connect-failure"]);
  });
});
