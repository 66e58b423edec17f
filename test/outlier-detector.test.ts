import { describe, expect, it } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { OutlierDetectionSchema } from "../src/gen/kedge/config/v1/health_pb.ts";
import { HttpBackendSchema } from "../src/gen/kedge/config/v1/backend_pb.ts";
import { Attempts } from "../src/backend/attempts.ts";
import { Endpoint } from "../src/backend/endpoint.ts";
import { HttpBackend } from "../src/backend/http-backend.ts";
import { OutlierDetector } from "../src/backend/outlier-detection.ts";
import { until } from "./helpers/wait.ts";

// The detector's transitions in-process: threshold, cap, doubling up to the maximum, forgetting;
// and what the attempt policy reports to it.

const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1e6 });

function detector(endpoints: Endpoint[], fields: { consecutiveFailures?: number; baseMs?: number; maxPercent?: number; maxMs?: number }) {
  const config = create(OutlierDetectionSchema, {
    consecutiveFailures: fields.consecutiveFailures,
    baseEjectionTime: fields.baseMs === undefined ? undefined : ms(fields.baseMs),
    maxEjectionPercent: fields.maxPercent,
    maxEjectionTime: fields.maxMs === undefined ? undefined : ms(fields.maxMs),
  });
  return new OutlierDetector("unit", config, () => endpoints.length);
}

const fail = (d: OutlierDetector, e: Endpoint, times: number) => {
  for (let i = 0; i < times; i++) d.failed(e);
};

describe("outlier detector", () => {
  it("ejects at consecutive_failures (default 5), and not before", () => {
    const endpoints = [new Endpoint("10.0.0.1", 80), new Endpoint("10.0.0.2", 80)];
    const d = detector(endpoints, {});
    fail(d, endpoints[0], 4);
    expect(endpoints[0].ejected).toBe(false);
    d.failed(endpoints[0]);
    expect(endpoints[0]).toMatchObject({ ejected: true, healthy: false, ejections: 1, ejectionMs: 30_000, consecutiveFailures: 0 });
    d.close();
  });

  it("doubles each ejection up to max_ejection_time", async () => {
    const e = new Endpoint("10.0.0.1", 80);
    const d = detector([e], { consecutiveFailures: 1, baseMs: 20, maxMs: 70, maxPercent: 100 });
    const lengths: number[] = [];
    for (let i = 0; i < 4; i++) {
      d.failed(e);
      expect(e.ejected).toBe(true);
      lengths.push(e.ejectionMs);
      await until("the ejection to end", () => !e.ejected);
    }
    expect(lengths).toEqual([20, 40, 70, 70]);
    d.close();
  });

  it("starts over from base_ejection_time after serving max_ejection_time", async () => {
    const e = new Endpoint("10.0.0.1", 80);
    const d = detector([e], { consecutiveFailures: 1, baseMs: 10, maxMs: 30, maxPercent: 100 });
    d.failed(e);
    await until("the ejection to end", () => !e.ejected);
    e.returnedAt -= 30; // as if it had served max_ejection_time since
    d.failed(e);
    expect(e).toMatchObject({ ejections: 1, ejectionMs: 10 });
    d.close();
  });

  it("holds to max_ejection_percent, and ejects a held endpoint at its next failure once there is room", () => {
    const endpoints = [1, 2, 3, 4].map((i) => new Endpoint(`10.0.0.${i}`, 80));
    const d = detector(endpoints, { consecutiveFailures: 2, maxPercent: 50 });
    for (const e of endpoints) fail(d, e, 2);
    expect(endpoints.map((e) => e.ejected)).toEqual([true, true, false, false]);
    expect(endpoints[2].consecutiveFailures).toBe(2);
    // Two more endpoints resolved: room for a third ejection, taken at a held one's next failure.
    endpoints.push(new Endpoint("10.0.0.5", 80), new Endpoint("10.0.0.6", 80));
    d.failed(endpoints[2]);
    d.failed(endpoints[3]);
    expect(endpoints.map((e) => e.ejected)).toEqual([true, true, true, false, false, false]);
    // Re-resolution replaced an ejected endpoint: its place under the cap is free.
    d.forget(endpoints[0]);
    endpoints[0] = new Endpoint("10.0.0.7", 80);
    d.failed(endpoints[3]);
    expect(endpoints[3].ejected).toBe(true);
    d.close();
  });

  it("ejects nothing with max_ejection_percent 0, and nothing once closed", () => {
    const e = new Endpoint("10.0.0.1", 80);
    fail(detector([e], { consecutiveFailures: 1, maxPercent: 0 }), e, 3);
    expect(e.ejected).toBe(false);
    const closed = detector([e], { consecutiveFailures: 1, maxPercent: 100 });
    closed.close();
    closed.failed(e);
    expect(e.ejected).toBe(false);
  });
});

describe("attempt outcomes", () => {
  it("count failed answers and dials, not busy pools or unprocessed requests; a good answer ends the run", () => {
    const b = new HttpBackend(
      create(HttpBackendSchema, {
        name: "unit",
        resolver: { case: "static", value: { addresses: ["127.0.0.1:1001", "127.0.0.1:1002"] } },
        outlierDetection: { consecutiveFailures: 3, maxEjectionPercent: 50 },
      }),
    );
    b.start();
    const a = new Attempts<HttpBackend>();
    a.backend = b;
    const e = a.next().endpoint;
    a.answered(true);
    a.answered(true);
    expect(e.consecutiveFailures).toBe(2);
    a.answered(false);
    expect(e.consecutiveFailures).toBe(0);
    a.answered(true);
    expect(a.retry("unprocessed", true)).toBe(true);
    a.sameEndpoint();
    expect(a.retry("busy", true)).toBe(true);
    expect(e.consecutiveFailures).toBe(1);
    const other = a.next().endpoint;
    expect(other).not.toBe(e);
    expect(a.retry("dial", true)).toBe(false);
    expect(other.consecutiveFailures).toBe(1);
    const again = new Attempts<HttpBackend>();
    again.backend = b;
    again.endpoint = e;
    again.answered(true);
    again.answered(true);
    expect(e.ejected).toBe(true);
    expect(b.hasHealthyEndpoint()).toBe(false); // one ejected, the other backing off after its dial
    b.close();
  });
});
