import { afterEach, describe, expect, it } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { Attempts } from "../src/backend/attempts.ts";
import { HttpBackend } from "../src/backend/http-backend.ts";
import type { RetryPolicy } from "../src/backend/retry-policy.ts";
import { HttpBackendSchema } from "../src/gen/kedge/config/v1/backend_pb.ts";

// In-process: what endpoint health and a route's retry policy do to a backend with failover tiers,
// on real backends whose static endpoints are never dialled.

const made: HttpBackend[] = [];

afterEach(() => {
  for (const b of made.splice(0)) b.close();
});

const addresses = (ports: number[]) => ports.map((p) => `127.0.0.1:${p}`);

/** A backend on `own` ports failing over to `tier` ports, with outlier detection when `maxEjectionPercent` is given. */
function backend(own: number[], tier: number[], maxEjectionPercent?: number): HttpBackend {
  const b = new HttpBackend(
    create(HttpBackendSchema, {
      name: "tiered",
      resolver: { case: "static", value: { addresses: addresses(own) } },
      failover: [{ resolver: { case: "static", value: { addresses: addresses(tier) } } }],
      outlierDetection: maxEjectionPercent === undefined ? undefined : { consecutiveFailures: 1, maxEjectionPercent },
    }),
  );
  b.start();
  made.push(b);
  return b;
}

function attemptsAt(b: HttpBackend, retryPolicy?: RetryPolicy): Attempts<HttpBackend> {
  const a = new Attempts<HttpBackend>();
  a.backend = b;
  a.retryPolicy = retryPolicy;
  return a;
}

/** An attempt at the backend answered with a 5xx: what outlier detection hears. */
function failedAnswer(b: HttpBackend, port: number): void {
  const a = attemptsAt(b);
  for (let i = 0; i < 4; i++) {
    const { endpoint } = a.next();
    if (endpoint.port === port) {
      a.answered(true);
      a.release();
      return;
    }
  }
  throw new Error(`no attempt reached port ${port}`);
}

const policy: RetryPolicy = { attempts: 4, on: new Set(["503"]), perTryTimeoutMs: 0, budgetPercent: 100 };

describe("endpoint health across tiers", () => {
  it("fails over from endpoints that are ejected or failing their checks, as from ones backing off", () => {
    const b = backend([1001, 1002], [2001]);
    const [one, two] = b.tiers[0].endpoints;
    one.ejected = true;
    two.failingChecks = true;
    expect(attemptsAt(b).next().endpoint.port).toBe(2001);
    expect(b.hasHealthyEndpoint()).toBe(true); // tier 1's
    b.tiers[1].endpoints[0].failingChecks = true;
    expect(b.hasHealthyEndpoint()).toBe(false);
    two.failingChecks = false;
    expect(attemptsAt(b).next().endpoint.port).toBe(1002);
  });

  it("applies max_ejection_percent to each tier's endpoints: at 100 a whole tier goes and its requests fail over", () => {
    const b = backend([1001], [2001], 100);
    failedAnswer(b, 1001);
    expect(b.tiers[0].endpoints[0].ejected).toBe(true);
    expect(attemptsAt(b).next().endpoint.port).toBe(2001);
  });

  it("keeps a tier's only endpoint at 50, though the backend has two", () => {
    const b = backend([1001], [2001], 50);
    for (let i = 0; i < 3; i++) failedAnswer(b, 1001);
    expect(b.tiers[0].endpoints[0].ejected).toBe(false);
    expect(attemptsAt(b).next().endpoint.port).toBe(1001);
  });

  it("takes no room from the backend's own endpoints for ejections in a failover tier", () => {
    const b = backend([1001, 1002], [2001, 2002], 50);
    b.tiers[0].endpoints.forEach((e) => (e.failingChecks = true)); // traffic on tier 1
    failedAnswer(b, 2001);
    expect(b.tiers[1].endpoints[0].ejected).toBe(true);
    b.tiers[0].endpoints.forEach((e) => (e.failingChecks = false));
    failedAnswer(b, 1001);
    expect(b.tiers[0].endpoints[0].ejected).toBe(true);
  });
});

describe("retries across tiers", () => {
  it("sends a policy retry to the tier's other endpoint, then to the next tier, without moving the active tier", () => {
    const b = backend([1001, 1002], [2001]);
    const a = attemptsAt(b, policy);
    const ports = [a.next().endpoint.port];
    for (let i = 0; i < 2; i++) {
      expect(a.retryAnswered("503", true)).toBe(true);
      ports.push(a.next().endpoint.port);
    }
    expect(ports.slice(0, 2).sort()).toEqual([1001, 1002]);
    expect(ports[2]).toBe(2001);
    a.succeeded();
    expect(b.activeTier).toBe(0); // the backend's own endpoints are healthy: new requests still go there
  });

  it("counts the requests in flight on every tier in the retry budget", () => {
    const b = backend([1001], [2001]);
    b.tiers[0].endpoints[0].failingChecks = true;
    const onTier1 = Array.from({ length: 3 }, () => {
      const a = attemptsAt(b);
      expect(a.next().endpoint.tier).toBe(1);
      return a;
    });
    expect(b.requestsInFlight).toBe(3);
    for (const a of onTier1) a.release();
    expect(b.requestsInFlight).toBe(0);
  });
});
