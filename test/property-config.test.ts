import { describe, expect, it } from "bun:test";
import { equals, ScalarType, toJson, type DescField, type DescMessage } from "@bufbuild/protobuf";
import fc from "fast-check";
import { stringify } from "yaml";
import { loadConfig } from "../src/config/load.ts";
import { ConfigError } from "../src/config/error.ts";
import { parseConfigText } from "../src/config/parse.ts";
import { makeTestPki } from "./helpers/certs.ts";
import { ConfigSchema, type Config } from "../src/gen/kedge/config/v1/config_pb.ts";

// A fixed seed: CI runs the same cases every time; change it locally to explore.
// Files a valid config names must exist: kedge reads them at load.
const pki = makeTestPki();
const runs = { seed: 0x636f6e66, numRuns: 300, includeErrorInReport: true };
const where = "embedded default config";
// Generous: these properties run hundreds of loads, and CI machines are shared.
const timeoutMs = 30_000;

function problemsOf(json: unknown): { config?: Config; problems: readonly string[] } {
  try {
    return { config: loadConfig({ embedded: json }), problems: [] };
  } catch (e) {
    if (e instanceof ConfigError) return { problems: e.problems };
    throw new Error(`loadConfig threw ${(e as Error).name} instead of ConfigError: ${(e as Error).message}\ninput: ${JSON.stringify(json)}`);
  }
}

// ---- field paths: `http.routes[2].header_matcher["x-a"]`, `(top level)` ----

type Segment = { name: string } | { index: number } | { key: string };

/** Splits "path: message" (after an optional "<where>: "); undefined when the problem starts with no field path. */
function problemPath(problem: string): Segment[] | undefined {
  const text = problem.startsWith(`${where}: `) ? problem.slice(where.length + 2) : problem;
  if (text.startsWith("(top level): ")) return [];
  const segments: Segment[] = [];
  let i = 0;
  for (;;) {
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i));
    if (!name) return undefined;
    segments.push({ name: name[0] });
    i += name[0].length;
    for (;;) {
      const index = /^\[(\d+)\]/.exec(text.slice(i));
      const key = index ? null : /^\[("(?:[^"\\]|\\.)*")\]/.exec(text.slice(i));
      if (index) segments.push({ index: Number(index[1]) });
      else if (key) segments.push({ key: JSON.parse(key[1]) as string });
      else break;
      i += (index ?? key)![0].length;
    }
    if (text.startsWith(": ", i)) return segments;
    if (text[i] !== ".") return undefined;
    i++;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * A path is real when each name is a field of the schema at that point (an unknown field only as
 * the last segment, and only if the input has that key), and each index or map key exists in the input.
 */
function pathIsReal(segments: readonly Segment[], input: unknown): boolean {
  let message: DescMessage | undefined = ConfigSchema;
  let field: DescField | undefined;
  let value: unknown = input;
  for (const [k, segment] of segments.entries()) {
    if ("name" in segment) {
      if (!message) return false;
      const known: DescField | undefined = message.fields.find((f) => f.name === segment.name);
      if (!known) return k === segments.length - 1 && isObject(value) && Object.hasOwn(value, segment.name);
      value = isObject(value) ? (value[known.name] ?? value[known.jsonName]) : undefined;
      field = known;
      message = known.fieldKind === "message" ? known.message : undefined;
    } else if ("index" in segment) {
      if (field?.fieldKind !== "list" || !Array.isArray(value) || segment.index >= value.length) return false;
      value = value[segment.index];
      message = field.listKind === "message" ? field.message : undefined;
      field = undefined;
    } else {
      if (field?.fieldKind !== "map" || !isObject(value) || !Object.hasOwn(value, segment.key)) return false;
      value = value[segment.key];
      message = field.mapKind === "message" ? field.message : undefined;
      field = undefined;
    }
  }
  return true;
}

function expectRealPaths(problems: readonly string[], input: unknown): void {
  for (const problem of problems) {
    const path = problemPath(problem);
    expect({ problem, startsWithPath: path !== undefined }).toEqual({ problem, startsWithPath: true });
    expect({ problem, real: pathIsReal(path!, input) }).toEqual({ problem, real: true });
  }
}

// ---- arbitrary JSON-ish configs, shaped by the schema so they reach deep fields ----

const stringPool = fc.constantFrom(
  "", "ab", "web", "Web Server", "1s", "1.5s", "10", " 12 ", "12 ", "0x10", "1e3", "-1", "true", "NaN",
  "127.0.0.1:80", "[::1]:443", "web.internal:8080", "host:99999", "[::1", ":80", "no-port", "web:0",
  "/a/*", "/a/*/b", "a", "*.x", "(", "^(?<svc>[a-z]+)$", "RS256", "none", "ROUND_ROBIN", "FORWARD_PROXY",
  "svc.ns:http", "http://web", "https://issuer.example", "debug", "é", "a b",
);
const numberPool = fc.oneof(
  fc.integer({ min: -3, max: 70_000 }),
  fc.constantFrom(0, 65535, 65536, 0xffffffff, 0x100000000, 2 ** 31, -(2 ** 31) - 1, 1e20, 1.5, -0.5, Number.MAX_SAFE_INTEGER),
);
const junk: fc.Arbitrary<unknown> = fc.oneof(stringPool, numberPool, fc.boolean(), fc.constant(null), fc.constant([]), fc.constant({}), fc.array(stringPool, { maxLength: 2 }));
const durationPool = fc.constantFrom("1s", "1.5s", "-2s", "0.000000001s", "0.0000000001s", "10", "1m", "315576000000s", "315576000001s", "99999999999999999999s", "s", " 1s", 5);
const unknownKey = fc.stringMatching(/^[a-z][a-zA-Z_]{0,7}$/);

/**
 * How wrong generated values may be. "typed": right JSON types, mostly valid, with rare subtle
 * faults, so decoding often gets through to the semantic checks; "loose": any value of a
 * plausible kind; "junk": now and then a value of the wrong kind.
 */
type Mode = "typed" | "loose" | "junk";
const subtle = <T>(common: fc.Arbitrary<T>, rare: fc.Arbitrary<unknown>) => fc.oneof({ weight: 30, arbitrary: common }, { weight: 1, arbitrary: rare });

function scalarValue(scalar: ScalarType, mode: Mode): fc.Arbitrary<unknown> {
  if (scalar === ScalarType.STRING) return fc.oneof(stringPool, fc.string({ maxLength: 5 }));
  if (scalar === ScalarType.BOOL) return fc.boolean();
  if (mode === "typed") return subtle(fc.integer({ min: 0, max: 70_000 }), fc.constantFrom(" 12", "12 ", "0x10", "1e3", 0xffffffff, 0x100000000, 2 ** 31));
  return fc.oneof(numberPool, stringPool);
}

function enumValue(names: string[], numbers: number[], mode: Mode): fc.Arbitrary<unknown> {
  const rare = fc.constantFrom("NOPE", 7, -1, 2 ** 31, -(2 ** 31) - 1, 1e20);
  return mode === "typed" ? subtle(fc.constantFrom(...names), fc.constantFrom(7, 2 ** 31, -(2 ** 31) - 1)) : fc.oneof(fc.constantFrom(...names, ...numbers), rare);
}

const messageCache = new Map<string, fc.Arbitrary<unknown>>();

/** Objects with any subset of the message's fields, under proto or JSON names, and an occasional stray key. */
function messageValue(desc: DescMessage, mode: Mode): fc.Arbitrary<unknown> {
  if (desc.typeName === "google.protobuf.Duration") return mode === "typed" ? subtle(fc.constantFrom("1s", "0.5s"), fc.constantFrom("315576000001s", "-99999999999999999999s")) : durationPool;
  const cacheKey = `${desc.typeName}/${mode}`;
  const cached = messageCache.get(cacheKey);
  if (cached) return cached;
  const withJunk = (a: fc.Arbitrary<unknown>) => (mode === "junk" ? fc.oneof({ weight: 12, arbitrary: a }, { weight: 1, arbitrary: junk }) : a);
  const item = (field: DescField): fc.Arbitrary<unknown> => {
    // google.protobuf.Value takes any JSON (server.workers: a number or "auto"); its schema is recursive.
    if (field.message?.typeName === "google.protobuf.Value") return fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constant("auto"));
    if (field.message) return messageValue(field.message, mode);
    if (field.enum) return enumValue(field.enum.values.map((v) => v.name), field.enum.values.map((v) => v.number), mode);
    return scalarValue(field.scalar ?? ScalarType.STRING, mode);
  };
  const fieldValue = (field: DescField): fc.Arbitrary<unknown> => {
    if (field.fieldKind === "list") return withJunk(fc.array(withJunk(item(field)), { maxLength: 3 }));
    if (field.fieldKind === "map") return withJunk(fc.dictionary(fc.string({ maxLength: 4 }), withJunk(item(field)), { maxKeys: 2 }));
    return withJunk(item(field));
  };
  const model = Object.fromEntries(desc.fields.map((f) => [f.name, fieldValue(f)]));
  const stray = mode === "typed" ? fc.constant(undefined) : fc.option(fc.dictionary(unknownKey, junk, { maxKeys: 1 }), { freq: 8, nil: undefined });
  const arb = fc.tuple(fc.record(model, { requiredKeys: [] }), fc.boolean(), stray).map(([fields, camel, extra]) => {
    const renamed = Object.fromEntries(Object.entries(fields).map(([k, v]) => [camel ? desc.fields.find((f) => f.name === k)!.jsonName : k, v]));
    return { ...renamed, ...extra };
  });
  messageCache.set(cacheKey, arb);
  return arb;
}

const jsonishConfig = fc.oneof(messageValue(ConfigSchema, "typed"), messageValue(ConfigSchema, "loose"), messageValue(ConfigSchema, "junk"), junk);

// ---- valid configs, built to satisfy every documented rule ----

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,5}[a-z0-9])?$/);
const dnsName = fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => l.join("."));
const port = fc.integer({ min: 1, max: 65535 });
const portOrZero = fc.integer({ min: 0, max: 65535 });
const backendName = fc.stringMatching(/^[a-z0-9_][a-z0-9_.-]{1,12}$/);
const duration = fc.constantFrom("1s", "0.5s", "30s", "120s", "0.000000001s");
const address = fc.oneof(
  fc.tuple(fc.ipV4(), port).map(([h, p]) => `${h}:${p}`),
  fc.tuple(fc.ipV6(), port).map(([h, p]) => `[${h}]:${p}`),
  fc.tuple(dnsName, port).map(([h, p]) => `${h}:${p}`),
);
const resolver = fc.oneof(
  fc.record({ host: fc.record({ dns_name: dnsName, port }) }),
  fc.record({ srv: fc.record({ dns_name: dnsName, port_override: portOrZero }) }),
  fc.record({ k8s: fc.record({ dns_port_name: fc.tuple(label.filter((l) => /^[a-z]/.test(l)), fc.constantFrom("", ".prod", ".prod.svc.cluster.local"), fc.constantFrom("", ":8080", ":http")).map((p) => p.join("")) }) }),
  fc.record({ static: fc.record({ addresses: fc.array(address, { minLength: 1, maxLength: 3 }) }) }),
);
const backendExtras = fc.record(
  {
    balancer: fc.constantFrom("ROUND_ROBIN", "LEAST_OUTSTANDING_REQUESTS"),
    timeouts: fc.record({ connect: duration, response_header: duration, idle: duration }, { requiredKeys: [] }),
    security: fc.record({ server_name: dnsName, insecure_skip_verify: fc.boolean(), ca_files: fc.array(fc.constantFrom(pki.caFile, pki.serverCertFile), { maxLength: 2 }) }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);
const backends = fc.uniqueArray(backendName, { minLength: 1, maxLength: 4 }).chain((names) =>
  fc.tuple(...names.map((name) => fc.tuple(resolver, backendExtras).map(([r, extras]) => ({ name, ...extras, ...r })))),
);
const headerMatcher = fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/), fc.string({ maxLength: 6 }), { maxKeys: 2 });
const pathRule = fc.tuple(fc.stringMatching(/^\/[a-z0-9/._-]{0,8}$/), fc.boolean()).map(([p, prefix]) => (prefix ? `${p}*` : p));
const adhocRule = fc.record(
  {
    dns_name_matcher: fc.oneof(dnsName, dnsName.map((d) => `*.${d}`)),
    port: fc.record(
      {
        default: portOrZero,
        allowed: fc.array(port, { maxLength: 3 }),
        allowed_ranges: fc.array(fc.tuple(port, port).map(([a, b]) => ({ from: Math.min(a, b), to: Math.max(a, b) })), { maxLength: 2 }),
      },
      { requiredKeys: [] },
    ),
    dns_name_replace: fc.record({ pattern: fc.constantFrom("^(?<svc>[a-z0-9-]+)\\.", "^.*$", "\\.pods\\.test$"), substitution: fc.constantFrom("${svc}.", "127.0.0.1", ".svc") }),
  },
  { requiredKeys: ["dns_name_matcher"] },
);
const httpSection = backends.chain((bs) =>
  fc.record(
    {
      backends: fc.constant(bs),
      routes: fc.array(
        fc.record(
          {
            backend_name: fc.constantFrom(...bs.map((b) => b.name)),
            host_matcher: dnsName,
            port_matcher: portOrZero,
            path_rules: fc.array(pathRule, { maxLength: 3 }),
            header_matcher: headerMatcher,
            proxy_mode: fc.constantFrom("ANY", "REVERSE_PROXY", "FORWARD_PROXY"),
            auth: fc.constant({ public: true }),
          },
          { requiredKeys: ["backend_name"] },
        ),
        { maxLength: 4 },
      ),
      adhoc_rules: fc.array(adhocRule, { maxLength: 2 }),
    },
    { requiredKeys: ["backends"] },
  ),
);
const grpcSection = backends.chain((bs) =>
  fc.record(
    {
      backends: fc.constant(bs),
      routes: fc.array(
        fc.record(
          {
            backend_name: fc.constantFrom(...bs.map((b) => b.name)),
            service_name_matcher: fc.constantFrom("*", "pkg.*", "pkg.Svc/*", "pkg.Svc/Get"),
            authority_host_matcher: dnsName,
            authority_port_matcher: portOrZero,
            metadata_matcher: headerMatcher,
          },
          { requiredKeys: ["backend_name"] },
        ),
        { maxLength: 4 },
      ),
    },
    { requiredKeys: ["backends"] },
  ),
);
const server = fc.record(
  {
    bind_address: fc.constantFrom("127.0.0.1", "0.0.0.0", "::"),
    http_port: portOrZero,
    admin_port: portOrZero,
    h2c_port: portOrZero,
    log_level: fc.constantFrom("", "debug", "info", "warn", "error"),
    graceful_shutdown: duration,
    client_idle_timeout: duration,
    max_request_header_bytes: fc.integer({ min: 0, max: 1 << 20 }),
  },
  { requiredKeys: [] },
);
// A server beyond loopback needs an authenticator or the words that allow none.
const auth = fc.constantFrom({ bearer_token: "t0ken" }, { allow_unauthenticated: true });
const validConfig = fc.record({ server, http: httpSection, grpc: grpcSection, auth }, { requiredKeys: ["auth"] });

// ---- faults with the path a problem must name ----

type Json = Record<string, any>;
const faults: Array<{ name: string; applies: (c: Json) => boolean; apply: (c: Json) => string }> = [
  { name: "backend name pattern", applies: (c) => !!c.http, apply: (c) => ((c.http.backends[0].name = "Web Server"), "http.backends[0].name") },
  { name: "duplicate backend", applies: (c) => !!c.http, apply: (c) => (c.http.backends.push({ ...c.http.backends[0] }), `http.backends[${c.http.backends.length - 1}].name`) },
  { name: "unknown backend", applies: (c) => !!c.http, apply: (c) => (c.http.routes = [...(c.http.routes ?? []), { backend_name: "no_such_backend" }], `http.routes[${c.http.routes.length - 1}].backend_name`) },
  { name: "route port", applies: (c) => !!c.grpc, apply: (c) => (c.grpc.routes = [{ backend_name: c.grpc.backends[0].name, authority_port_matcher: 65536 }], "grpc.routes[0].authority_port_matcher") },
  { name: "path rule", applies: (c) => !!c.http?.routes?.length, apply: (c) => ((c.http.routes[0].path_rules = ["/ok", "nope"]), "http.routes[0].path_rules[1]") },
  { name: "static address", applies: (c) => !!c.http, apply: (c) => ((c.http.backends[0] = { name: c.http.backends[0].name, static: { addresses: ["10.0.0.1:80", "web:99999"] } }), "http.backends[0].static.addresses[1]") },
  { name: "unbracketed address", applies: (c) => !!c.grpc, apply: (c) => ((c.grpc.backends[0] = { name: c.grpc.backends[0].name, static: { addresses: ["[::1"] } }), "grpc.backends[0].static.addresses[0]") },
  { name: "padded number", applies: () => true, apply: (c) => ((c.server = { ...c.server, http_port: " 8080" }), "server.http_port") },
  { name: "huge duration", applies: () => true, apply: (c) => ((c.server = { ...c.server, graceful_shutdown: "315576000001s" }), "server.graceful_shutdown") },
  { name: "enum number beyond int32", applies: (c) => !!c.http, apply: (c) => ((c.http.backends[0].balancer = 2 ** 31), "http.backends[0].balancer") },
  { name: "stray field", applies: (c) => !!c.http, apply: (c) => ((c.http.backends[0].hots = 1), "http.backends[0].hots") },
  { name: "adhoc range", applies: () => true, apply: (c) => ((c.grpc = { ...c.grpc, adhoc_rules: [{ dns_name_matcher: "*.x", port: { allowed_ranges: [{ from: 9, to: 8 }] } }] }), "grpc.adhoc_rules[0].port.allowed_ranges[0]") },
  { name: "host port zero", applies: (c) => !!c.http, apply: (c) => ((c.http.backends[0] = { name: c.http.backends[0].name, host: { dns_name: "a", port: 0 } }), "http.backends[0].host.port") },
];

describe("config loading, for any input", () => {
  it("fails only with ConfigError, every problem starting with a real field path", () => {
    fc.assert(
      fc.property(jsonishConfig, (input) => {
        expectRealPaths(problemsOf(input).problems, input);
      }),
      runs,
    );
  }, timeoutMs);

  it("parses any YAML-ish text to a value or a ConfigError naming the file and line", () => {
    const unit = fc.constantFrom("a", "b", ":", ": ", " ", "  ", "\n", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "&b ", "*b", "!!binary ", "!!set ", "!x ", "'", '"', "#", "? ", "|", ">", "1", "\t", "<<: ", "---\n", "...\n", "%YAML 1.2\n", "\u0000", "é");
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 40 }), fc.constantFrom("c.yaml", "c.json"), (text, file) => {
        try {
          parseConfigText(text, file);
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
          for (const p of (e as ConfigError).problems) expect(p).toMatch(new RegExp(`^${file.replace(".", "\\.")}: (line \\d+, column \\d+|somewhere): invalid (YAML|JSON): `));
        }
      }),
      runs,
    );
  }, timeoutMs);

  it("refuses YAML alias expansion bombs with a ConfigError", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 12 }), (levels, fanout) => {
        const lines = ["l0: &l0 [x, y]"];
        for (let i = 1; i <= levels; i++) lines.push(`l${i}: &l${i} [${Array.from({ length: fanout }, () => `*l${i - 1}`).join(", ")}]`);
        try {
          parseConfigText(lines.join("\n"), "bomb.yaml");
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
          expect((e as ConfigError).problems[0]).toStartWith("bomb.yaml: ");
        }
      }),
      { ...runs, numRuns: 60 },
    );
  }, timeoutMs);
});

describe("valid configs", () => {
  it("load without problems", () => {
    fc.assert(
      fc.property(validConfig, (input) => {
        expect(problemsOf(input).problems).toEqual([]);
      }),
      runs,
    );
  }, timeoutMs);

  it("round-trip: load → toJson (JSON names, proto names, YAML text) → load gives the same config", () => {
    fc.assert(
      fc.property(validConfig, (input) => {
        const first = loadConfig({ embedded: input });
        const camel = toJson(ConfigSchema, first);
        const snake = toJson(ConfigSchema, first, { useProtoFieldName: true });
        for (const again of [
          loadConfig({ embedded: camel }),
          loadConfig({ embedded: snake }),
          loadConfig({ embedded: parseConfigText(stringify(snake), "c.yaml") }),
          loadConfig({ embedded: parseConfigText(JSON.stringify(camel, null, 1), "c.json") }),
        ]) {
          expect(equals(ConfigSchema, again, first)).toBe(true);
        }
      }),
      { ...runs, numRuns: 100 },
    );
  }, timeoutMs);

  it("with one fault, a problem names the faulty field's path, and every path is real", () => {
    fc.assert(
      fc.property(validConfig, fc.nat(), (input, pick) => {
        const config = structuredClone(input) as Json;
        const usable = faults.filter((f) => f.applies(config));
        const fault = usable[pick % usable.length];
        const path = fault.apply(config);
        const { problems } = problemsOf(config);
        expect({ fault: fault.name, named: problems.some((p) => p.replace(`${where}: `, "").startsWith(`${path}: `)), problems }).toMatchObject({ named: true });
        expectRealPaths(problems, config);
      }),
      runs,
    );
  }, timeoutMs);
});

describe("regressions these properties found", () => {
  it("reports, with their field paths, values the decoder used to pass on to fromJson", () => {
    const cases: Array<[unknown, string]> = [
      [{ server: { http_port: " 8080" } }, "server.http_port: expected a number"],
      [{ server: { graceful_shutdown: "315576000001s" } }, "server.graceful_shutdown: 315576000001s is out of range"],
      [{ http: { routes: [{ proxy_mode: 2 ** 31 }] } }, "http.routes[0].proxy_mode: 2147483648 is not one of"],
      [{ http: { backends: [{ name: "web", static: { addresses: ["web:99999", "[::1", ":80"] } }] } }, 'http.backends[0].static.addresses[2]: must be "host:port"'],
    ];
    for (const [input, expected] of cases) expect(problemsOf(input).problems.join("\n")).toContain(expected);
  });

  it("turns YAML aliases yaml throws on into a ConfigError", () => {
    expect(() => parseConfigText("a: *nowhere\n", "c.yaml")).toThrow(ConfigError);
    expect(() => parseConfigText("a: &a [1, 2]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n", "c.yaml")).toThrow(ConfigError);
  });
});
