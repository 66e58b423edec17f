import { afterEach, describe, expect, it } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { Attempts, maxEndpointAttempts, maxReplays } from "../src/backend/attempts.ts";
import { HttpBackend } from "../src/backend/http-backend.ts";
import { HttpBackendSchema } from "../src/gen/kedge/config/v1/backend_pb.ts";

// In-process: the attempt policy's decisions, on real backends whose static endpoints are never dialled.
const made: HttpBackend[] = [];

function backend(name: string, ports: number[]): HttpBackend {
  const b = new HttpBackend(create(HttpBackendSchema, { name, resolver: { case: "static", value: { addresses: ports.map((p) => `127.0.0.1:${p}`) } } }));
  b.start();
  made.push(b);
  return b;
}

function attemptsAt(b: HttpBackend, deadlineAt?: number): Attempts<HttpBackend> {
  const a = new Attempts<HttpBackend>();
  a.backend = b;
  a.deadlineAt = deadlineAt;
  return a;
}

const outstanding = (b: HttpBackend) => b.view().map((e) => e.outstanding);

afterEach(() => {
  for (const b of made.splice(0)) b.close();
});

describe("attempt policy", () => {
  it("moves to another endpoint after a dial failure and backs the failed one off", () => {
    const b = backend("two", [1001, 1002]);
    const a = attemptsAt(b);
    const first = a.next().endpoint;
    expect(outstanding(b)).toEqual(first.port === 1001 ? [1, 0] : [0, 1]);
    expect(a.retry("dial", true)).toBe(true);
    expect(first.healthy).toBe(false);
    const second = a.next().endpoint;
    expect(second).not.toBe(first);
    expect(outstanding(b).reduce((x, y) => x + y)).toBe(1);
  });

  it("tries at most maxEndpointAttempts distinct endpoints, and no more than the backend has", () => {
    const many = attemptsAt(backend("five", [1001, 1002, 1003, 1004, 1005]));
    const tried = new Set<number>();
    for (;;) {
      tried.add(many.next().endpoint.port);
      if (!many.retry("dial", true)) break;
    }
    expect(tried.size).toBe(maxEndpointAttempts);
    const two = attemptsAt(backend("two", [1001, 1002]));
    two.next();
    expect(two.retry("dial", true)).toBe(true);
    two.next();
    expect(two.retry("dial", true)).toBe(false);
  });

  it("counts a busy pool against the endpoint cap without backing the endpoint off", () => {
    const a = attemptsAt(backend("one", [1001]));
    const endpoint = a.next().endpoint;
    expect(a.retry("busy", true)).toBe(false);
    expect(endpoint.healthy).toBe(true);
    expect(endpoint.outstanding).toBe(0);
  });

  it("replays an unprocessed request up to maxReplays times", () => {
    const a = attemptsAt(backend("one", [1001]));
    let replays = 0;
    for (;;) {
      a.next();
      if (!a.retry("unprocessed", true)) break;
      replays++;
    }
    expect(replays).toBe(maxReplays);
    expect(a.endpoint!.healthy).toBe(true);
  });

  it("never retries once the request is no longer in kedge's hands to send again", () => {
    const dial = attemptsAt(backend("two", [1001, 1002]));
    dial.next();
    expect(dial.retry("dial", false)).toBe(false);
    const refused = attemptsAt(backend("one", [1001]));
    refused.next();
    expect(refused.retry("unprocessed", false)).toBe(false);
  });

  it("never retries past the caller's deadline", () => {
    const a = attemptsAt(backend("two", [1001, 1002]), performance.now() - 1);
    a.next();
    expect(a.pastDeadline()).toBe(true);
    expect(a.retry("dial", true)).toBe(false);
    const b = attemptsAt(backend("one", [1001]), performance.now() - 1);
    b.next();
    expect(b.retry("unprocessed", true)).toBe(false);
    const c = attemptsAt(backend("one", [1001]), performance.now() + 60_000);
    c.next();
    expect(c.retry("unprocessed", true)).toBe(true);
  });

  it("replays an HTTP/1.1 request on the same endpoint, counted outstanding again", () => {
    const b = backend("two", [1001, 1002]);
    const a = attemptsAt(b);
    const { endpoint, pool } = a.next();
    expect(a.retry("unprocessed", true)).toBe(true);
    expect(endpoint.outstanding).toBe(0);
    expect(a.sameEndpoint()).toBe(pool);
    expect(endpoint.outstanding).toBe(1);
  });

  it("releases an attempt's endpoint once however often it is told", () => {
    const b = backend("one", [1001]);
    const a = attemptsAt(b);
    a.next();
    a.release();
    a.release();
    expect(outstanding(b)).toEqual([0]);
    a.next();
    a.next();
    expect(outstanding(b)).toEqual([1]);
  });

  it("sends to the successor of a backend a reload retired, following a chain of reloads", () => {
    const old = backend("web", [1001]);
    const middle = backend("web", [1002]);
    const live = backend("web", [1003]);
    const a = attemptsAt(old);
    old.close(middle);
    middle.close(live);
    expect(a.pendingResolution).toBeUndefined();
    expect(a.next().endpoint.port).toBe(1003);
    expect(a.backend).toBe(live);
  });

  it("starts afresh on the successor: endpoints failed on the retired backend are not held against it", () => {
    const old = backend("web", [1001, 1002]);
    const a = attemptsAt(old);
    a.next();
    a.retry("dial", true);
    const next = backend("web", [1001, 1002]);
    old.close(next);
    const tried = new Set<number>();
    tried.add(a.next().endpoint.port);
    expect(a.retry("dial", true)).toBe(true);
    tried.add(a.next().endpoint.port);
    expect(tried.size).toBe(2);
  });

  it("has no successor for a backend closed without one (adhoc, kedge stopping)", () => {
    const old = backend("web", [1001]);
    const a = attemptsAt(old);
    old.close();
    expect(() => a.next()).toThrow("no endpoints");
  });
});
