import { describe, expect, it } from "bun:test";
import { create } from "@bufbuild/protobuf";
import fc from "fast-check";
import { AdhocRuleSchema, GrpcRouteSchema, HttpRoute_ProxyMode, HttpRouteSchema, type AdhocRule, type GrpcRoute, type HttpRoute } from "../src/gen/kedge/config/v1/routes_pb.ts";
import { KedgeError } from "../src/errors.ts";
import { compileAdhocRules } from "../src/router/adhoc.ts";
import { compileGrpcRoutes, type GrpcCallFacts } from "../src/router/grpc.ts";
import { formatHostPort, parseHostPort } from "../src/net/host-port.ts";
import { compileHttpRoutes } from "../src/router/http.ts";
import { compileDnsNameMatcher, type RequestFacts } from "../src/router/match.ts";

// A fixed seed: CI runs the same cases every time; change it locally to explore.
const runs = { seed: 0x6b656467, numRuns: 400, includeErrorInReport: true };

type Headers = RequestFacts["headers"];

// Small universes, so generated requests hit generated routes often enough to test ordering.
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/);
const dnsName = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join("."));
const hostWord = fc.constantFrom("api.example.com", "web.example.com", "example.com", "::1", "10.0.0.1");
const headerName = fc.constantFrom("x-tenant", "x-env");
const headerValue = fc.constantFrom("blue", "green");
const requestHeaders: fc.Arbitrary<Headers> = fc.dictionary(headerName, fc.oneof(headerValue, fc.array(headerValue, { maxLength: 2 })), { maxKeys: 2 });
const headerMatcher = fc.dictionary(fc.mixedCase(headerName), headerValue, { maxKeys: 2 });

/** The header rule as the README states it: every key present with exactly its value; for repeated headers, any one value. */
function headersMatchModel(matcher: Record<string, string>, headers: Headers): boolean {
  return Object.entries(matcher).every(([key, want]) => {
    const got = headers[key.toLowerCase()];
    return got !== undefined && (Array.isArray(got) ? got.includes(want) : got === want);
  });
}

describe("dns name matchers", () => {
  it('"*.suffix" matches exactly the names ending in ".suffix" after a non-empty label', () => {
    fc.assert(
      fc.property(dnsName, fc.option(fc.array(label, { minLength: 1, maxLength: 3 }), { nil: undefined }), fc.mixedCase(dnsName), (suffix, labels, other) => {
        const matches = compileDnsNameMatcher(`*.${suffix}`);
        if (labels) expect(matches(`${labels.join(".")}.${suffix}`)).toBe(true);
        expect(matches(suffix)).toBe(false);
        expect(matches(`.${suffix}`)).toBe(false);
        const host = other.toLowerCase();
        const labelled = host.endsWith(`.${suffix}`) && host.length > suffix.length + 1;
        expect(matches(host)).toBe(labelled);
      }),
      runs,
    );
  });

  it("an exact matcher matches only its own name, in any letter case of the pattern", () => {
    fc.assert(
      fc.property(fc.mixedCase(dnsName), fc.oneof(dnsName, fc.constant("")), (pattern, other) => {
        const matches = compileDnsNameMatcher(pattern);
        expect(matches(pattern.toLowerCase())).toBe(true);
        expect(matches(other)).toBe(other === pattern.toLowerCase());
      }),
      runs,
    );
  });
});

describe("host and port parsing", () => {
  const port = fc.integer({ min: 0, max: 65535 });
  const v4 = fc.ipV4();
  const v6 = fc.ipV6();

  it("splits host:port, lower-cases the host, and defaults a missing port", () => {
    fc.assert(
      fc.property(fc.mixedCase(fc.oneof(dnsName, v4)), port, port, (host, p, fallback) => {
        expect(parseHostPort(`${host}:${p}`, fallback)).toEqual({ host: host.toLowerCase(), port: p });
        expect(parseHostPort(host, fallback)).toEqual({ host: host.toLowerCase(), port: fallback });
        expect(parseHostPort(`${host}:`, fallback)).toEqual({ host: host.toLowerCase(), port: fallback });
      }),
      runs,
    );
  });

  it("reads IPv6 literals with and without brackets and port", () => {
    fc.assert(
      fc.property(fc.mixedCase(v6), port, port, (addr, p, fallback) => {
        const host = addr.toLowerCase();
        expect(parseHostPort(`[${addr}]:${p}`, fallback)).toEqual({ host, port: p });
        expect(parseHostPort(`[${addr}]`, fallback)).toEqual({ host, port: fallback });
        // A bare literal with two or more colons is all host: its last group is no port.
        if (addr.split(":").length > 2) expect(parseHostPort(addr, fallback)).toEqual({ host, port: fallback });
        expect(parseHostPort(`[${addr}`, fallback)).toBeUndefined();
        expect(parseHostPort(`[${addr}]x`, fallback)).toBeUndefined();
      }),
      runs,
    );
  });

  it("round-trips formatHostPort for names, IPv4 and IPv6 literals", () => {
    fc.assert(
      fc.property(fc.oneof(dnsName, v4, v6), port, (host, p) => {
        expect(parseHostPort(formatHostPort(host, p), 0)).toEqual({ host, port: p });
      }),
      runs,
    );
  });

  it("refuses ports that are not 0-65535 in decimal, and empty hosts", () => {
    const badPort = fc.oneof(
      fc.integer({ min: 65536, max: 10_000_000 }).map(String),
      fc.stringMatching(/^[0-9]{0,3}[^0-9:\]][0-9]{0,3}$/),
      fc.constantFrom("-1", "+80", " 80", "80 ", "0x50", "1e3", "123456"),
    );
    fc.assert(
      fc.property(fc.oneof(dnsName, v4, v6.map((a) => `[${a}]`)), badPort, (host, p) => {
        expect(parseHostPort(`${host}:${p}`, 80)).toBeUndefined();
        expect(parseHostPort(`:${p}`, 80)).toBeUndefined();
      }),
      runs,
    );
    expect(parseHostPort("", 80)).toBeUndefined();
    expect(parseHostPort("[]:80", 80)).toBeUndefined();
  });
});

describe("http route table", () => {
  const pathRule = fc.constantFrom("/", "/*", "/api", "/api/*", "/api/v1", "/api/v1/*", "/x*", "/api/v1/users");
  const routeArb: fc.Arbitrary<HttpRoute> = fc
    .record({
      hostMatcher: fc.oneof(fc.constant(""), fc.mixedCase(hostWord)),
      portMatcher: fc.constantFrom(0, 0, 80, 443, 8080),
      proxyMode: fc.constantFrom(HttpRoute_ProxyMode.ANY, HttpRoute_ProxyMode.REVERSE_PROXY, HttpRoute_ProxyMode.FORWARD_PROXY),
      pathRules: fc.array(pathRule, { maxLength: 3 }),
      headerMatcher: headerMatcher,
    })
    .map((r) => create(HttpRouteSchema, { ...r, backendName: "be" }));
  const factsArb: fc.Arbitrary<RequestFacts> = fc.record({
    host: hostWord,
    port: fc.constantFrom(80, 443, 8080),
    path: fc.constantFrom("/", "/api", "/api/", "/api/v1", "/api/v1/users", "/apix", "/x", "/xyz", "/other"),
    forwardProxy: fc.boolean(),
    headers: requestHeaders,
  });

  /** The README's route semantics, written out plainly: every set matcher must hold. */
  function routeMatchesModel(route: HttpRoute, facts: RequestFacts): boolean {
    if (route.hostMatcher !== "" && route.hostMatcher.toLowerCase() !== facts.host) return false;
    if (route.portMatcher !== 0 && route.portMatcher !== facts.port) return false;
    if (route.proxyMode === HttpRoute_ProxyMode.REVERSE_PROXY && facts.forwardProxy) return false;
    if (route.proxyMode === HttpRoute_ProxyMode.FORWARD_PROXY && !facts.forwardProxy) return false;
    const pathOk = route.pathRules.length === 0 || route.pathRules.some((rule) =>
      rule.endsWith("*") ? facts.path.startsWith(rule.slice(0, -1)) : facts.path === rule,
    );
    return pathOk && headersMatchModel(route.headerMatcher, facts.headers);
  }

  it("picks the first route the model says matches, or none", () => {
    fc.assert(
      fc.property(fc.array(routeArb, { maxLength: 8 }), factsArb, (routes, facts) => {
        const expected = routes.findIndex((r) => routeMatchesModel(r, facts));
        const got = compileHttpRoutes(routes).match(facts);
        expect(got?.index ?? -1).toBe(expected);
      }),
      runs,
    );
  });

  it("routes a Host header the same in any letter case", () => {
    fc.assert(
      fc.property(fc.array(routeArb, { maxLength: 8 }), factsArb, fc.mixedCase(hostWord), fc.constantFrom("", ":80", ":8080"), (routes, facts, host, port) => {
        const table = compileHttpRoutes(routes);
        const at = (authority: string) => {
          const hp = parseHostPort(authority, 80)!;
          return table.match({ ...facts, host: hp.host, port: hp.port })?.index;
        };
        const authority = host.includes(":") ? `[${host}]${port}` : `${host}${port}`;
        expect(at(authority)).toBe(at(authority.toLowerCase()));
      }),
      runs,
    );
  });
});

describe("grpc route table", () => {
  const services = ["pkg.Svc", "pkg.Other", "pkg.sub.Svc", "other.Svc", "pkgx.Svc"];
  const methods = ["Get", "GetAll", "Put"];
  const fullNames = services.flatMap((s) => methods.map((m) => `${s}/${m}`));
  // Any prefix of a real full method name, as a glob ("…*") or as it is, plus the documented shapes.
  const serviceMatcher = fc.oneof(
    fc.constantFrom("", "*", "pkg.*", "pkg.Svc/*", "pkg.Svc", "pkg.Svc/Get", "pkg.Svc/Get*", "pkg.sub.*"),
    fc.tuple(fc.constantFrom(...fullNames), fc.nat(), fc.boolean()).map(([name, cut, glob]) => name.slice(0, 1 + (cut % name.length)) + (glob ? "*" : "")),
  );
  const routeArb: fc.Arbitrary<GrpcRoute> = fc
    .record({
      serviceNameMatcher: serviceMatcher,
      authorityHostMatcher: fc.oneof(fc.constant(""), fc.mixedCase(hostWord)),
      authorityPortMatcher: fc.constantFrom(0, 0, 443, 8443),
      metadataMatcher: headerMatcher,
    })
    .map((r) => create(GrpcRouteSchema, { ...r, backendName: "be" }));
  const callArb: fc.Arbitrary<GrpcCallFacts> = fc.record({
    service: fc.constantFrom(...services),
    method: fc.constantFrom(...methods),
    host: hostWord,
    port: fc.constantFrom(0, 443, 8443),
    metadata: requestHeaders,
  });

  /**
   * kedge Go's serviceNameMatches on the full method name "pkg.Service/Method": "" and "*" match
   * everything, a trailing "*" is a prefix of the full name, anything else is the full name; plus
   * this port's documented extension, a bare "pkg.Service" for the whole service.
   */
  function serviceMatchesModel(pattern: string, call: GrpcCallFacts): boolean {
    const full = `${call.service}/${call.method}`;
    if (pattern === "" || pattern === "*") return true;
    if (pattern.endsWith("*")) return full.startsWith(pattern.slice(0, -1));
    if (!pattern.includes("/")) return call.service === pattern;
    return full === pattern;
  }

  function routeMatchesModel(route: GrpcRoute, call: GrpcCallFacts): boolean {
    if (!serviceMatchesModel(route.serviceNameMatcher, call)) return false;
    if (route.authorityHostMatcher !== "" && route.authorityHostMatcher.toLowerCase() !== call.host) return false;
    if (route.authorityPortMatcher !== 0 && route.authorityPortMatcher !== call.port) return false;
    return headersMatchModel(route.metadataMatcher, call.metadata);
  }

  it("picks the first route the model says matches, or none", () => {
    fc.assert(
      fc.property(fc.array(routeArb, { maxLength: 8 }), callArb, (routes, call) => {
        const expected = routes.findIndex((r) => routeMatchesModel(r, call));
        expect(compileGrpcRoutes(routes).match(call)?.index ?? -1).toBe(expected);
      }),
      runs,
    );
  });

  it("matches service_name_matcher globs like kedge Go on the full method name", () => {
    fc.assert(
      fc.property(serviceMatcher, callArb, (pattern, call) => {
        const table = compileGrpcRoutes([create(GrpcRouteSchema, { backendName: "be", serviceNameMatcher: pattern })]);
        expect(table.match(call) !== undefined).toBe(serviceMatchesModel(pattern, call));
      }),
      runs,
    );
  });
});

describe("adhoc rules", () => {
  const ports = [80, 443, 8080, 9000, 9001];
  const ruleArb: fc.Arbitrary<AdhocRule> = fc
    .record({
      dnsNameMatcher: fc.mixedCase(fc.constantFrom("*.x.test", "a.x.test", "*.y.x.test", "b.y.x.test")),
      port: fc.option(
        fc.record({
          default: fc.constantFrom(0, 80, 8080),
          allowed: fc.uniqueArray(fc.constantFrom(...ports), { maxLength: 2 }),
          allowedRanges: fc.array(fc.record({ from: fc.constantFrom(80, 9000), to: fc.constantFrom(443, 9000, 9001) }), { maxLength: 2 }),
        }),
        { nil: undefined },
      ),
    })
    .map((r) => create(AdhocRuleSchema, r));
  const hostArb = fc.constantFrom("a.x.test", "b.x.test", "b.y.x.test", "c.y.x.test", "x.test", "a.z.test");

  type Outcome = { ruleIndex: number; port: number } | "refused" | undefined;

  /** kedge Go's adhoc addresser: the first rule whose name matches decides; its port rules may refuse. */
  function adhocModel(rules: readonly AdhocRule[], host: string, port: number | undefined): Outcome {
    for (const [ruleIndex, rule] of rules.entries()) {
      const pattern = rule.dnsNameMatcher.toLowerCase();
      const nameOk = pattern.startsWith("*.") ? host.endsWith(pattern.slice(1)) && host !== pattern.slice(1) : host === pattern;
      if (!nameOk) continue;
      const fallback = rule.port?.default || 80;
      const target = port ?? fallback;
      const allowed = rule.port?.allowed ?? [];
      const ranges = rule.port?.allowedRanges ?? [];
      // With neither list set, only the default port is allowed (kedge Go allowed none).
      const ok = allowed.length + ranges.length === 0 ? target === fallback : allowed.includes(target) || ranges.some((r) => r.from <= target && target <= r.to);
      return ok ? { ruleIndex, port: target } : "refused";
    }
    return undefined;
  }

  it("applies the first rule whose name matches, with its port rules", () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 5 }), hostArb, fc.option(fc.constantFrom(...ports), { nil: undefined }), (rules, host, port) => {
        const table = compileAdhocRules(rules);
        let got: Outcome;
        try {
          const target = table.match(host, port);
          got = target && { ruleIndex: target.ruleIndex, port: target.port };
          if (target) expect(target.host).toBe(host);
        } catch (e) {
          expect(e).toBeInstanceOf(KedgeError);
          expect((e as KedgeError).type).toBe("adhoc-port-not-allowed");
          got = "refused";
        }
        expect(got).toEqual(adhocModel(rules, host, port));
      }),
      runs,
    );
  });

  it("rewrites the dialled host with dns_name_replace, expanding $1 and ${name} as documented", () => {
    fc.assert(
      fc.property(label, label, fc.constantFrom("$1", "${1}", "${svc}", "$svc"), fc.constantFrom("", "-x"), (svc, ns, ref, tail) => {
        const rule = create(AdhocRuleSchema, {
          dnsNameMatcher: "*.pods.test",
          dnsNameReplace: { pattern: "^(?<svc>[a-z0-9-]+)\\.([a-z0-9-]+)\\.pods\\.test$", substitution: `${ref}${tail}.internal` },
        });
        const target = compileAdhocRules([rule]).match(`${svc}.${ns}.pods.test`, 80);
        expect(target?.host).toBe(`${svc}${tail}.internal`);
      }),
      runs,
    );
  });
});

describe("regressions these properties found", () => {
  it('matches "pkg.Service/Get*" on the method name prefix, as kedge Go did', () => {
    const table = compileGrpcRoutes([create(GrpcRouteSchema, { backendName: "be", serviceNameMatcher: "pkg.Svc/Get*" })]);
    const call = (method: string): GrpcCallFacts => ({ service: "pkg.Svc", method, host: "", port: 0, metadata: {} });
    expect(table.match(call("GetAll"))?.index).toBe(0);
    expect(table.match(call("Put"))).toBeUndefined();
  });

  it("expands ${name} in dns_name_replace substitutions", () => {
    const rule = create(AdhocRuleSchema, { dnsNameMatcher: "*.x", dnsNameReplace: { pattern: "^(?<svc>[a-z]+)\\.x$", substitution: "${svc}.internal" } });
    expect(compileAdhocRules([rule]).match("web.x", 80)?.host).toBe("web.internal");
  });
});
