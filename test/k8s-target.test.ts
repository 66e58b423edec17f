import { describe, expect, it } from "bun:test";
import { addressesFromEndpoints, addressesFromSlices } from "../src/k8s/endpoints-resolver.ts";
import { parseK8sTarget } from "../src/config/k8s-target.ts";

describe("k8s resolver target syntax (kedge Go's cases)", () => {
  const ok: Array<[string, unknown]> = [
    ["service1", { service: "service1", namespace: "default", port: { kind: "first" } }],
    ["service1.ns1", { service: "service1", namespace: "ns1", port: { kind: "first" } }],
    ["service2.ns2.svc.local", { service: "service2", namespace: "ns2", port: { kind: "first" } }],
    ["service3.ns3.svc.cluster1.example.org", { service: "service3", namespace: "ns3", port: { kind: "first" } }],
    ["service4.ns4:1010", { service: "service4", namespace: "ns4", port: { kind: "number", port: 1010 } }],
    ["service5.ns5:some-port", { service: "service5", namespace: "ns5", port: { kind: "named", name: "some-port" } }],
    ["service6.ns6:", { service: "service6", namespace: "ns6", port: { kind: "first" } }],
  ];
  for (const [target, expected] of ok) it(`parses ${target}`, () => expect(parseK8sTarget(target)).toEqual(expected as never));

  it("rejects an empty target and one with a scheme, with kedge Go's messages", () => {
    expect(() => parseK8sTarget("")).toThrow("Failed to parse targetEntry. Empty string");
    expect(() => parseK8sTarget("http://service1")).toThrow("Bad targetEntry name. It cannot contain any schema.");
    expect(() => parseK8sTarget("Bad_Name.ns")).toThrow("is not a Kubernetes service name");
    expect(() => parseK8sTarget("svc:99999")).toThrow("out of range");
  });
});

describe("addresses from EndpointSlices and Endpoints", () => {
  const slice = (ports: Array<{ name?: string; port: number }>, endpoints: Array<{ ip: string; ready?: boolean | null; serving?: boolean; terminating?: boolean }>) => ({
    metadata: { name: "s" },
    ports,
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating } })),
  });

  it("merges every slice, each with its own port, and keeps only ready endpoints (nil means ready)", () => {
    const target = parseK8sTarget("web.prod:http");
    const got = addressesFromSlices(target, [
      slice([{ name: "http", port: 8080 }, { name: "grpc", port: 9090 }], [{ ip: "10.0.0.1", ready: true }, { ip: "10.0.0.2", ready: false }]),
      slice([{ name: "grpc", port: 9091 }, { name: "http", port: 8081 }], [{ ip: "10.0.1.1", ready: null }]),
    ]);
    expect(got).toEqual([{ host: "10.0.0.1", port: 8080 }, { host: "10.0.1.1", port: 8081 }]);
  });

  it("falls back to serving, non-terminating endpoints when none is ready", () => {
    const target = parseK8sTarget("web.prod:8443");
    const got = addressesFromSlices(target, [
      slice([{ name: "http", port: 8080 }], [
        { ip: "10.0.0.1", ready: false, serving: true, terminating: false },
        { ip: "10.0.0.2", ready: false, serving: true, terminating: true },
        { ip: "10.0.0.3", ready: false, serving: false },
      ]),
    ]);
    expect(got).toEqual([{ host: "10.0.0.1", port: 8443 }]);
  });

  it("uses the first port when the target names none, and skips slices without the named port", () => {
    expect(addressesFromSlices(parseK8sTarget("web"), [slice([{ name: "a", port: 1 }, { name: "b", port: 2 }], [{ ip: "10.0.0.1" }])])).toEqual([{ host: "10.0.0.1", port: 1 }]);
    expect(addressesFromSlices(parseK8sTarget("web:c"), [slice([{ name: "a", port: 1 }], [{ ip: "10.0.0.1" }])])).toEqual([]);
  });

  it("reads core Endpoints subsets, ready addresses only", () => {
    const got = addressesFromEndpoints(parseK8sTarget("web:http"), [
      { metadata: { name: "web" }, subsets: [{ addresses: [{ ip: "10.0.0.1" }], notReadyAddresses: [{ ip: "10.0.0.9" }], ports: [{ name: "http", port: 80 }] }] },
    ]);
    expect(got).toEqual([{ host: "10.0.0.1", port: 80 }]);
  });
});
