import { randomUUID } from "node:crypto";
import type http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { issueClientCert, makeTestPki } from "./certs.ts";

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
    uid?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface FakeKube {
  /** https://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** PEM of the CA that signed the serving cert (and accepted client certs), and its file path. */
  readonly ca: string;
  readonly caFile: string;
  /** A client cert/key (files) the server accepts as authentication (CN=kedge). */
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** Bearer tokens accepted right now; starts as ["test-token"]. Replace to simulate token rotation. */
  tokens: string[];
  /** Every request seen: method, path, query (as URLSearchParams->object), and how it authenticated ("token" | "cert" | "none"). */
  readonly requests: Array<{ method: string; path: string; query: Record<string, string>; auth: "token" | "cert" | "none" }>;
  /** Creates or replaces an object (emits ADDED or MODIFIED to matching watches), assigning a new resourceVersion (a global, monotonically increasing integer as a string, like etcd's) and a uid; returns the stored object. */
  apply(obj: KubeObject): KubeObject;
  /** Deletes (emits DELETED with the last state and a new resourceVersion). No-op if absent. */
  remove(apiVersion: string, kind: string, namespace: string, name: string): void;
  /** Forget history: any watch or list-with-resourceVersion older than the current resourceVersion now answers 410 Gone ("too old resource version"). Open watches whose start version is older receive an ERROR event with a 410 Status and are closed, as the real server does. */
  compact(): void;
  /** Sends a BOOKMARK event (object of the watched kind with only metadata.resourceVersion = current) to every open watch that asked for allowWatchBookmarks=true. */
  bookmark(): void;
  /** Ends every open watch stream cleanly (like the API server's watch timeout or a load balancer cutting it). */
  dropWatches(): void;
  /** Stops listening and destroys all connections (API server down); objects are kept. */
  stop(): Promise<void>;
  /** Listens again on the same port (API server back after a restart). */
  start(): Promise<void>;
  /** When false, every discovery.k8s.io request answers 404 (a cluster without EndpointSlices), so clients fall back to core Endpoints. Default true. */
  endpointSlicesServed: boolean;
  /** Number of currently open watch streams. */
  readonly openWatches: number;
  close(): Promise<void>;
  /** (Extra) The current global resourceVersion. */
  readonly resourceVersion: string;
  /** (Extra) A copy of a stored object, or undefined. Use namespace "" for cluster-scoped kinds. */
  get(apiVersion: string, kind: string, namespace: string, name: string): KubeObject | undefined;
}

// ---------------------------------------------------------------------------------------------
// Resource types

interface ResourceType {
  group: string;
  version: string;
  kind: string;
  resource: string;
  singular: string;
  namespaced: boolean;
  shortNames?: string[];
}

const BUILTIN: ResourceType[] = [
  { group: "", version: "v1", kind: "Pod", resource: "pods", singular: "pod", namespaced: true, shortNames: ["po"] },
  { group: "", version: "v1", kind: "Service", resource: "services", singular: "service", namespaced: true, shortNames: ["svc"] },
  { group: "", version: "v1", kind: "Endpoints", resource: "endpoints", singular: "endpoints", namespaced: true, shortNames: ["ep"] },
  { group: "", version: "v1", kind: "Namespace", resource: "namespaces", singular: "namespace", namespaced: false, shortNames: ["ns"] },
  { group: "", version: "v1", kind: "ConfigMap", resource: "configmaps", singular: "configmap", namespaced: true, shortNames: ["cm"] },
  { group: "", version: "v1", kind: "Secret", resource: "secrets", singular: "secret", namespaced: true },
  { group: "", version: "v1", kind: "Node", resource: "nodes", singular: "node", namespaced: false, shortNames: ["no"] },
  { group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice", resource: "endpointslices", singular: "endpointslice", namespaced: true },
];

const VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

const gvString = (group: string, version: string) => (group ? `${group}/${version}` : version);
const typeKey = (group: string, version: string, resource: string) => `${group}/${version}/${resource}`;
const splitApiVersion = (apiVersion: string): [string, string] => {
  const i = apiVersion.indexOf("/");
  return i < 0 ? ["", apiVersion] : [apiVersion.slice(0, i), apiVersion.slice(i + 1)];
};

function pluralize(kind: string): string {
  const k = kind.toLowerCase();
  if (/(s|x|z|ch|sh)$/.test(k)) return `${k}es`;
  if (/[^aeiou]y$/.test(k)) return `${k.slice(0, -1)}ies`;
  return `${k}s`;
}

function guessKind(resource: string): string {
  let s = resource;
  if (s.endsWith("ies")) s = `${s.slice(0, -3)}y`;
  else if (/(ses|xes|zes|ches|shes)$/.test(s)) s = s.slice(0, -2);
  else if (s.endsWith("s")) s = s.slice(0, -1);
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// ---------------------------------------------------------------------------------------------
// Selectors

type Pred = (obj: KubeObject) => boolean;

class BadRequest extends Error {}

function splitTerms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t !== "");
}

function parseLabelSelector(sel: string): Pred {
  const preds: Array<(labels: Record<string, string>) => boolean> = [];
  for (const term of splitTerms(sel)) {
    let m: RegExpMatchArray | null;
    if ((m = term.match(/^([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)$/))) {
      const [, key, op, list] = m;
      const values = list.split(",").map((v) => v.trim());
      preds.push(op === "in" ? (l) => key in l && values.includes(l[key]) : (l) => !(key in l) || !values.includes(l[key]));
    } else if ((m = term.match(/^!\s*([^\s!=(),]+)$/))) {
      const key = m[1];
      preds.push((l) => !(key in l));
    } else if ((m = term.match(/^([^\s!=(),]+)\s*!=\s*([^\s!=(),]*)$/))) {
      const [, key, value] = m;
      preds.push((l) => l[key] !== value);
    } else if ((m = term.match(/^([^\s!=(),]+)\s*==?\s*([^\s!=(),]*)$/))) {
      const [, key, value] = m;
      preds.push((l) => l[key] === value);
    } else if ((m = term.match(/^([^\s!=(),]+)$/))) {
      const key = m[1];
      preds.push((l) => key in l);
    } else {
      throw new BadRequest(`unable to parse requirement: found '${term}'`);
    }
  }
  return (obj) => {
    const labels = obj.metadata.labels ?? {};
    return preds.every((p) => p(labels));
  };
}

function fieldValue(obj: KubeObject, path: string): string {
  let v: unknown = obj;
  for (const part of path.split(".")) {
    if (v === null || typeof v !== "object") return "";
    v = (v as Record<string, unknown>)[part];
  }
  return v === undefined || v === null ? "" : String(v);
}

function parseFieldSelector(sel: string): Pred {
  const preds: Pred[] = [];
  for (const term of splitTerms(sel)) {
    const m = term.match(/^([^\s!=]+)\s*(!=|==|=)\s*(.*)$/);
    if (!m) throw new BadRequest(`invalid selector: '${sel}'; can't understand '${term}'`);
    const [, field, op, value] = m;
    preds.push(op === "!=" ? (o) => fieldValue(o, field) !== value : (o) => fieldValue(o, field) === value);
  }
  return (obj) => preds.every((p) => p(obj));
}

// ---------------------------------------------------------------------------------------------
// Helpers

const clone = <T>(v: T): T => structuredClone(v);

function statusObject(code: number, reason: string, message: string, details?: Record<string, unknown>) {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, ...(details ? { details } : {}), code };
}

function nowTimestamp(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

/** Like k8s.io/apimachinery/pkg/util/duration.HumanDuration. */
function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < -1) return "<invalid>";
  if (s < 0) return "0s";
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (h < 24 * 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (h < 24 * 365 * 2) return `${d}d`;
  const y = Math.floor(d / 365);
  if (h < 24 * 365 * 8) return d % 365 === 0 ? `${y}y` : `${y}y${d % 365}d`;
  return `${y}y`;
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === "object" && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

// ---------------------------------------------------------------------------------------------
// The server

interface HistoryEvent {
  rv: number;
  typeKey: string;
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: KubeObject;
  /** The previous state (for MODIFIED/DELETED), used to turn selector transitions into ADDED/DELETED. */
  prev?: KubeObject;
}

interface Watch {
  res: http.ServerResponse;
  type: ResourceType;
  typeKey: string;
  matches: Pred;
  startRv: number;
  bookmarks: boolean;
  table: false | "None" | "Metadata" | "Object";
  timer?: ReturnType<typeof setTimeout>;
  closed: boolean;
}

interface ParsedPath {
  group: string;
  version: string;
  namespace?: string;
  resource: string;
  name?: string;
  subresource?: string;
  legacyWatch: boolean;
}

/** Starts a fake Kubernetes API server (HTTPS, token or client-cert auth) speaking the real JSON list/watch protocol. */
export async function startFakeKube(options: { port?: number } = {}): Promise<FakeKube> {
  const pki = makeTestPki();
  const client = issueClientCert(pki, "kube-client", "/CN=kedge", {});

  const types = new Map<string, ResourceType>();
  for (const t of BUILTIN) types.set(typeKey(t.group, t.version, t.resource), t);
  const store = new Map<string, Map<string, KubeObject>>();
  let history: HistoryEvent[] = [];
  let rv = 1;
  let compactedAt = 0;
  const watches = new Set<Watch>();
  const sockets = new Set<Socket>();
  const requests: FakeKube["requests"] = [];
  let server: https.Server | undefined;
  let port = options.port ?? 0;

  const typeForKind = (apiVersion: string, kind: string, namespaced: boolean): ResourceType => {
    const [group, version] = splitApiVersion(apiVersion);
    for (const t of types.values()) if (t.group === group && t.version === version && t.kind === kind) return t;
    const resource = pluralize(kind);
    const t: ResourceType = { group, version, kind, resource, singular: kind.toLowerCase(), namespaced };
    types.set(typeKey(group, version, resource), t);
    return t;
  };
  const typeForResource = (group: string, version: string, resource: string): ResourceType =>
    types.get(typeKey(group, version, resource)) ?? { group, version, kind: guessKind(resource), resource, singular: guessKind(resource).toLowerCase(), namespaced: true };
  const bucket = (key: string) => {
    let b = store.get(key);
    if (!b) store.set(key, (b = new Map()));
    return b;
  };
  const objKey = (ns: string | undefined, name: string) => `${ns ?? ""}/${name}`;

  // --- watches ---------------------------------------------------------------------------------

  const closeWatch = (w: Watch) => {
    if (w.closed) return;
    w.closed = true;
    if (w.timer) clearTimeout(w.timer);
    watches.delete(w);
    if (!w.res.writableEnded && !w.res.destroyed) w.res.end();
  };

  const tableFor = (objs: KubeObject[], include: "None" | "Metadata" | "Object", resourceVersion: string, extra: Record<string, unknown> = {}) => ({
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion, ...extra },
    columnDefinitions: [
      { name: "Name", type: "string", format: "name", description: "Name must be unique within a namespace.", priority: 0 },
      { name: "Age", type: "string", format: "", description: "CreationTimestamp is a timestamp representing the server time when this object was created.", priority: 0 },
    ],
    rows: objs.map((o) => {
      const created = typeof o.metadata.creationTimestamp === "string" ? Date.parse(o.metadata.creationTimestamp) : Date.now();
      const row: Record<string, unknown> = { cells: [o.metadata.name, humanDuration(Date.now() - created)] };
      if (include === "Object") row.object = o;
      else if (include === "Metadata") row.object = { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o.metadata };
      return row;
    }),
  });

  const send = (w: Watch, type: string, object: unknown) => {
    if (w.closed || w.res.writableEnded || w.res.destroyed) return;
    let obj = object;
    if (w.table && (type === "ADDED" || type === "MODIFIED" || type === "DELETED")) {
      const o = object as KubeObject;
      obj = tableFor([o], w.table, o.metadata.resourceVersion ?? String(rv));
    }
    w.res.write(`${JSON.stringify({ type, object: obj })}\n`);
  };

  /** Converts a stored change into what a watcher with a selector sees (like the watch cache). */
  const deliver = (w: Watch, ev: HistoryEvent) => {
    if (ev.typeKey !== w.typeKey || ev.rv <= w.startRv) return;
    const now = w.matches(ev.object);
    const before = ev.prev !== undefined && w.matches(ev.prev);
    if (ev.type === "DELETED") {
      if (now) send(w, "DELETED", ev.object);
    } else if (ev.type === "ADDED") {
      if (now) send(w, "ADDED", ev.object);
    } else if (now && before) send(w, "MODIFIED", ev.object);
    else if (now) send(w, "ADDED", ev.object);
    else if (before) {
      const gone = clone(ev.prev!);
      gone.metadata.resourceVersion = String(ev.rv);
      send(w, "DELETED", gone);
    }
  };

  const record = (ev: HistoryEvent) => {
    history.push(ev);
    for (const w of [...watches]) deliver(w, ev);
  };

  // --- mutations ---------------------------------------------------------------------------------

  const put = (input: KubeObject): { stored: KubeObject; created: boolean } => {
    if (!input || typeof input !== "object" || typeof input.apiVersion !== "string" || typeof input.kind !== "string" || !input.metadata?.name) {
      throw new BadRequest("object needs apiVersion, kind and metadata.name");
    }
    const obj = clone(input);
    const known = [...types.values()].find((t) => gvString(t.group, t.version) === obj.apiVersion && t.kind === obj.kind);
    const t = known ?? typeForKind(obj.apiVersion, obj.kind, obj.metadata.namespace !== undefined && obj.metadata.namespace !== "");
    if (t.namespaced) obj.metadata.namespace = obj.metadata.namespace || "default";
    else delete obj.metadata.namespace;
    const key = typeKey(t.group, t.version, t.resource);
    const b = bucket(key);
    const k = objKey(obj.metadata.namespace, obj.metadata.name);
    const prev = b.get(k);
    rv++;
    obj.metadata.uid = prev?.metadata.uid ?? obj.metadata.uid ?? randomUUID();
    obj.metadata.creationTimestamp = prev?.metadata.creationTimestamp ?? obj.metadata.creationTimestamp ?? nowTimestamp();
    obj.metadata.resourceVersion = String(rv);
    b.set(k, obj);
    record({ rv, typeKey: key, type: prev ? "MODIFIED" : "ADDED", object: obj, prev });
    return { stored: clone(obj), created: !prev };
  };

  const del = (t: ResourceType, ns: string | undefined, name: string): KubeObject | undefined => {
    const key = typeKey(t.group, t.version, t.resource);
    const b = store.get(key);
    const k = objKey(t.namespaced ? ns : undefined, name);
    const prev = b?.get(k);
    if (!b || !prev) return undefined;
    b.delete(k);
    rv++;
    const last = clone(prev);
    last.metadata.resourceVersion = String(rv);
    record({ rv, typeKey: key, type: "DELETED", object: last, prev });
    return clone(last);
  };

  // Like a fresh cluster.
  for (const ns of ["default", "kube-system"]) put({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns }, spec: { finalizers: ["kubernetes"] }, status: { phase: "Active" } });

  // --- HTTP ----------------------------------------------------------------------------------------

  const json = (res: http.ServerResponse, code: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(code, { "content-type": "application/json", "cache-control": "no-cache, private", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };
  const fail = (res: http.ServerResponse, code: number, reason: string, message: string, details?: Record<string, unknown>) =>
    json(res, code, statusObject(code, reason, message, details));
  const notFoundPath = (res: http.ServerResponse) => fail(res, 404, "NotFound", "the server could not find the requested resource", {});

  const parsePath = (segs: string[]): ParsedPath | undefined => {
    let group: string, version: string, rest: string[];
    if (segs[0] === "api" && segs.length >= 3) {
      group = "";
      version = segs[1];
      rest = segs.slice(2);
    } else if (segs[0] === "apis" && segs.length >= 4) {
      group = segs[1];
      version = segs[2];
      rest = segs.slice(3);
    } else return undefined;
    let legacyWatch = false;
    if (rest[0] === "watch") {
      legacyWatch = true;
      rest = rest.slice(1);
    }
    let namespace: string | undefined;
    if (rest[0] === "namespaces" && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    if (rest.length < 1 || rest.length > 3) return undefined;
    return { group, version, namespace, resource: rest[0], name: rest[1], subresource: rest[2], legacyWatch };
  };

  const groupsServed = () => {
    const groups = new Map<string, Set<string>>();
    for (const t of types.values()) {
      if (!t.group) continue;
      if (t.group === "discovery.k8s.io" && !api.endpointSlicesServed) continue;
      let s = groups.get(t.group);
      if (!s) groups.set(t.group, (s = new Set()));
      s.add(t.version);
    }
    return groups;
  };

  const resourceList = (group: string, version: string) => ({
    kind: "APIResourceList",
    ...(group ? { apiVersion: "v1" } : {}),
    groupVersion: gvString(group, version),
    resources: [...types.values()]
      .filter((t) => t.group === group && t.version === version)
      .map((t) => ({ name: t.resource, singularName: t.singular, namespaced: t.namespaced, kind: t.kind, verbs: VERBS, ...(t.shortNames ? { shortNames: t.shortNames } : {}) })),
  });

  const discovery = (res: http.ServerResponse, path: string): boolean => {
    if (path === "/version") {
      json(res, 200, { major: "1", minor: "33", gitVersion: "v1.33.0", gitCommit: "60a317eadfcb839692a68eab88b2096f4d708f4f", gitTreeState: "clean", buildDate: "2025-04-23T13:07:02Z", goVersion: "go1.24.2", compiler: "gc", platform: "linux/amd64" });
    } else if (path === "/healthz" || path === "/livez" || path === "/readyz") {
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
      res.end("ok");
    } else if (path === "/api") {
      json(res, 200, { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: `127.0.0.1:${port}` }] });
    } else if (path === "/api/v1") {
      json(res, 200, resourceList("", "v1"));
    } else if (path === "/apis") {
      json(res, 200, {
        kind: "APIGroupList",
        apiVersion: "v1",
        groups: [...groupsServed()].map(([name, versions]) => {
          const vs = [...versions].map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
          return { name, versions: vs, preferredVersion: vs[0] };
        }),
      });
    } else {
      const m = path.match(/^\/apis\/([^/]+)(?:\/([^/]+))?$/);
      if (!m) return false;
      const versions = groupsServed().get(m[1]);
      if (!versions || (m[2] && !versions.has(m[2]))) notFoundPath(res);
      else if (m[2]) json(res, 200, resourceList(m[1], m[2]));
      else {
        const vs = [...versions].map((v) => ({ groupVersion: `${m[1]}/${v}`, version: v }));
        json(res, 200, { kind: "APIGroup", apiVersion: "v1", name: m[1], versions: vs, preferredVersion: vs[0] });
      }
    }
    return true;
  };

  const tableMode = (req: http.IncomingMessage, query: URLSearchParams): false | "None" | "Metadata" | "Object" => {
    const accept = req.headers.accept ?? "";
    const first = accept.split(",")[0] ?? "";
    if (!/as=Table/.test(first)) return false;
    const inc = query.get("includeObject");
    return inc === "None" || inc === "Object" ? inc : "Metadata";
  };

  const selectorFor = (p: ParsedPath, t: ResourceType, query: URLSearchParams): Pred => {
    const preds: Pred[] = [];
    if (p.namespace !== undefined && t.namespaced) preds.push((o) => o.metadata.namespace === p.namespace);
    if (p.name !== undefined) preds.push((o) => o.metadata.name === p.name);
    const ls = query.get("labelSelector");
    if (ls) preds.push(parseLabelSelector(ls));
    const fs = query.get("fieldSelector");
    if (fs) preds.push(parseFieldSelector(fs));
    return (o) => preds.every((pr) => pr(o));
  };

  const parseRv = (s: string | null): number | undefined => {
    if (s === null || s === "") return undefined;
    if (!/^\d+$/.test(s)) throw new BadRequest(`resourceVersion: Invalid value: "${s}": must be a non-negative integer`);
    return Number(s);
  };

  const currentItems = (key: string, matches: Pred) =>
    [...(store.get(key)?.entries() ?? [])]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => o)
      .filter(matches);

  const startWatch = (req: http.IncomingMessage, res: http.ServerResponse, p: ParsedPath, t: ResourceType, query: URLSearchParams) => {
    const key = typeKey(t.group, t.version, t.resource);
    const matches = selectorFor(p, t, query);
    const requested = parseRv(query.get("resourceVersion"));
    const sendInitial = query.get("sendInitialEvents") === "true";
    const timeout = Number(query.get("timeoutSeconds") ?? "0");
    const w: Watch = {
      res,
      type: t,
      typeKey: key,
      matches,
      startRv: requested === undefined || requested === 0 || sendInitial ? rv : requested,
      bookmarks: query.get("allowWatchBookmarks") === "true",
      table: tableMode(req, query),
      closed: false,
    };
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache, private", "transfer-encoding": "chunked" });
    res.flushHeaders();
    if (requested !== undefined && requested !== 0 && !sendInitial && requested < compactedAt) {
      res.end(`${JSON.stringify({ type: "ERROR", object: statusObject(410, "Expired", `too old resource version: ${requested} (${compactedAt})`) })}\n`);
      return;
    }
    watches.add(w);
    const onClose = () => closeWatch(w);
    req.on("close", onClose);
    res.on("close", onClose);
    if (timeout > 0) w.timer = setTimeout(onClose, timeout * 1000);
    if (requested === undefined || requested === 0 || sendInitial) {
      for (const o of currentItems(key, matches)) send(w, "ADDED", o);
      if (sendInitial && w.bookmarks) {
        send(w, "BOOKMARK", { kind: t.kind, apiVersion: gvString(t.group, t.version), metadata: { resourceVersion: String(rv), annotations: { "k8s.io/initial-events-end": "true" } } });
      }
    } else {
      for (const ev of history) deliver(w, ev);
    }
  };

  const handleResource = async (req: http.IncomingMessage, res: http.ServerResponse, p: ParsedPath, query: URLSearchParams) => {
    if (p.group === "discovery.k8s.io" && !api.endpointSlicesServed) return notFoundPath(res);
    if (p.group === "" && p.version !== "v1") return notFoundPath(res);
    if (p.group && !groupsServed().get(p.group)?.has(p.version) && !types.has(typeKey(p.group, p.version, p.resource))) return notFoundPath(res);
    if (p.subresource !== undefined && p.subresource !== "status") return notFoundPath(res);
    const t = typeForResource(p.group, p.version, p.resource);
    const key = typeKey(t.group, t.version, t.resource);
    const gv = gvString(t.group, t.version);
    const method = req.method ?? "GET";
    const contentType = req.headers["content-type"] ?? "";
    if ((method === "POST" || method === "PUT" || method === "PATCH") && !/json/.test(contentType)) {
      // kubectl's typed clients (e.g. `kubectl create configmap`) send protobuf; this fake only decodes JSON.
      return fail(res, 415, "UnsupportedMediaType", `the fake API server only decodes JSON bodies, not ${contentType || "(none)"}`);
    }
    const isWatch = p.legacyWatch || query.get("watch") === "true" || query.get("watch") === "1";
    const ns = t.namespaced ? p.namespace : undefined;
    if (!t.namespaced && p.namespace !== undefined) return notFoundPath(res);
    const notFound = (name: string) => fail(res, 404, "NotFound", `${t.resource}${t.group ? `.${t.group}` : ""} "${name}" not found`, { name, ...(t.group ? { group: t.group } : {}), kind: t.resource });

    if (method === "GET" && isWatch) return startWatch(req, res, p, t, query);

    if (method === "GET" && p.name === undefined) {
      const listRv = parseRv(query.get("resourceVersion"));
      if (listRv !== undefined && listRv !== 0 && listRv < compactedAt) {
        return fail(res, 410, "Expired", `The resourceVersion for the provided list is too old. (requested ${listRv}, compacted at ${compactedAt})`);
      }
      let items = currentItems(key, selectorFor(p, t, query));
      const meta: Record<string, unknown> = { resourceVersion: String(rv) };
      const cont = query.get("continue");
      let offset = 0;
      if (cont) {
        let token: { rv: number; start: number };
        try {
          token = JSON.parse(Buffer.from(cont, "base64").toString("utf8"));
        } catch {
          throw new BadRequest("continue key is not valid");
        }
        if (token.rv < compactedAt) return fail(res, 410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.");
        offset = token.start;
        items = items.slice(offset);
        meta.resourceVersion = String(token.rv);
      }
      const limit = Number(query.get("limit") ?? "0");
      if (limit > 0 && items.length > limit) {
        meta.continue = Buffer.from(JSON.stringify({ rv: Number(meta.resourceVersion), start: offset + limit })).toString("base64");
        meta.remainingItemCount = items.length - limit;
        items = items.slice(0, limit);
      }
      const table = tableMode(req, query);
      if (table) return json(res, 200, tableFor(items, table, String(meta.resourceVersion), meta.continue ? { continue: meta.continue } : {}));
      return json(res, 200, { kind: `${t.kind}List`, apiVersion: gv, metadata: meta, items });
    }

    if (method === "GET") {
      const o = store.get(key)?.get(objKey(ns, p.name!));
      if (!o) return notFound(p.name!);
      const table = tableMode(req, query);
      return json(res, 200, table ? tableFor([o], table, String(rv)) : o);
    }

    if (method === "POST" && p.name === undefined) {
      const body = JSON.parse(await readBody(req)) as KubeObject;
      body.apiVersion ??= gv;
      body.kind ??= t.kind;
      if (ns !== undefined) body.metadata = { ...body.metadata, namespace: ns };
      if (!body.metadata?.name && typeof body.metadata?.generateName === "string") body.metadata.name = `${body.metadata.generateName}${randomUUID().slice(0, 5)}`;
      if (store.get(key)?.has(objKey(t.namespaced ? body.metadata.namespace || "default" : undefined, body.metadata?.name))) {
        return fail(res, 409, "AlreadyExists", `${t.resource} "${body.metadata.name}" already exists`, { name: body.metadata.name, kind: t.resource });
      }
      delete body.metadata.resourceVersion;
      return json(res, 201, put(body).stored);
    }

    if ((method === "PUT" || method === "PATCH") && p.name !== undefined) {
      const current = store.get(key)?.get(objKey(ns, p.name));
      const text = await readBody(req);
      let body: KubeObject;
      if (method === "PATCH") {
        if (!/merge-patch\+json/.test(contentType)) return fail(res, 415, "UnsupportedMediaType", `the fake API server only supports merge patches (and treats strategic ones as merge patches), not ${contentType}`);
        if (!current) return notFound(p.name);
        body = mergePatch(clone(current), JSON.parse(text)) as KubeObject;
      } else {
        body = JSON.parse(text) as KubeObject;
        if (!current && body.metadata?.resourceVersion) return notFound(p.name);
      }
      const wantRv = body.metadata?.resourceVersion;
      if (current && wantRv && wantRv !== current.metadata.resourceVersion) {
        return fail(res, 409, "Conflict", `Operation cannot be fulfilled on ${t.resource} "${p.name}": the object has been modified; please apply your changes to the latest version and try again`, { name: p.name, kind: t.resource });
      }
      body.apiVersion ??= gv;
      body.kind ??= t.kind;
      body.metadata = { ...body.metadata, name: p.name, ...(ns !== undefined ? { namespace: ns } : {}) };
      const { stored, created } = put(body);
      return json(res, created ? 201 : 200, stored);
    }

    if (method === "DELETE" && p.name !== undefined) {
      const gone = del(t, ns, p.name);
      return gone ? json(res, 200, gone) : notFound(p.name);
    }

    return fail(res, 405, "MethodNotAllowed", `the server does not allow this method on the requested resource`);
  };

  const authenticate = (req: http.IncomingMessage): "token" | "cert" | "none" => {
    const h = req.headers.authorization ?? "";
    const m = h.match(/^Bearer\s+(.+)$/i);
    if (m && api.tokens.includes(m[1].trim())) return "token";
    if ((req.socket as TLSSocket).authorized === true) return "cert";
    return "none";
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "https://x");
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const auth = authenticate(req);
    requests.push({ method: req.method ?? "", path, query: Object.fromEntries(url.searchParams), auth });
    if (auth === "none") return fail(res, 401, "Unauthorized", "Unauthorized");
    const run = async () => {
      if (path === "/openapi/v2" || path.startsWith("/openapi/")) return notFoundPath(res);
      if (path.startsWith("/apis/discovery.k8s.io") && !api.endpointSlicesServed) return notFoundPath(res);
      if (req.method === "GET" && discovery(res, path)) return;
      const p = parsePath(path.split("/").filter((s) => s !== ""));
      if (!p) return notFoundPath(res);
      await handleResource(req, res, p, url.searchParams);
    };
    run().catch((e: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (e instanceof BadRequest || e instanceof SyntaxError) fail(res, 400, "BadRequest", e.message);
      else fail(res, 500, "InternalError", String(e));
    });
  };

  const listen = async () => {
    const s = https.createServer({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true, rejectUnauthorized: false }, handler);
    s.on("connection", (sock: Socket) => {
      sockets.add(sock);
      sock.on("close", () => sockets.delete(sock));
    });
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        s.off("error", reject);
        resolve();
      });
    });
    const addr = s.address();
    if (addr && typeof addr === "object") port = addr.port;
    server = s;
  };

  const api: FakeKube = {
    get url() {
      return `https://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    ca: pki.ca,
    caFile: pki.caFile,
    clientCertFile: client.certFile,
    clientKeyFile: client.keyFile,
    tokens: ["test-token"],
    requests,
    endpointSlicesServed: true,
    get openWatches() {
      return watches.size;
    },
    get resourceVersion() {
      return String(rv);
    },
    get(apiVersion, kind, namespace, name) {
      const t = [...types.values()].find((x) => gvString(x.group, x.version) === apiVersion && x.kind === kind);
      if (!t) return undefined;
      const o = store.get(typeKey(t.group, t.version, t.resource))?.get(objKey(t.namespaced ? namespace : undefined, name));
      return o ? clone(o) : undefined;
    },
    apply: (obj) => put(obj).stored,
    remove(apiVersion, kind, namespace, name) {
      const t = [...types.values()].find((x) => gvString(x.group, x.version) === apiVersion && x.kind === kind);
      if (t) del(t, namespace || undefined, name);
    },
    compact() {
      compactedAt = rv;
      history = [];
      for (const w of [...watches]) {
        if (w.startRv < compactedAt) {
          send(w, "ERROR", statusObject(410, "Expired", `too old resource version: ${w.startRv} (${compactedAt})`));
          closeWatch(w);
        }
      }
    },
    bookmark() {
      for (const w of watches) {
        if (w.bookmarks) send(w, "BOOKMARK", { kind: w.type.kind, apiVersion: gvString(w.type.group, w.type.version), metadata: { resourceVersion: String(rv) } });
      }
    },
    dropWatches() {
      for (const w of [...watches]) closeWatch(w);
    },
    async stop() {
      const s = server;
      server = undefined;
      for (const w of [...watches]) {
        w.closed = true;
        if (w.timer) clearTimeout(w.timer);
        watches.delete(w);
      }
      if (!s) return;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      s.closeAllConnections();
      for (const sock of sockets) sock.destroy();
      sockets.clear();
      await closed;
    },
    async start() {
      if (!server) await listen();
    },
    close: () => api.stop(),
  };

  await listen();
  return api;
}

// ---------------------------------------------------------------------------------------------
// Builders

function hashIp(s: string): string {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `10.96.${(h >>> 8) & 255}.${(h & 254) + 1}`;
}

export function service(
  namespace: string,
  name: string,
  ports: Array<{ name?: string; port: number; targetPort?: number | string }>,
  options: { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): KubeObject {
  const ip = hashIp(`${namespace}/${name}`);
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace, ...(options.labels ? { labels: options.labels } : {}), ...(options.annotations ? { annotations: options.annotations } : {}) },
    spec: {
      type: "ClusterIP",
      clusterIP: ip,
      clusterIPs: [ip],
      ipFamilies: ["IPv4"],
      ipFamilyPolicy: "SingleStack",
      sessionAffinity: "None",
      selector: { app: name },
      ports: ports.map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), protocol: "TCP", port: p.port, targetPort: p.targetPort ?? p.port })),
    },
    status: { loadBalancer: {} },
  };
}

/**
 * An EndpointSlice (discovery.k8s.io/v1) for a service: label kubernetes.io/service-name, addressType IPv4,
 * ports [{name, port, protocol:"TCP"}], endpoints [{addresses:[ip], conditions:{ready, serving, terminating}, targetRef?}].
 * ready defaults to true, serving to ready, terminating to false. An extra optional `pod` sets targetRef.
 * Like the real API server, an empty endpoints (or ports) list is serialized as null.
 */
export function endpointSlice(
  namespace: string,
  service: string,
  sliceName: string,
  ports: Array<{ name?: string; port: number }>,
  endpoints: Array<{ ip: string; ready?: boolean; serving?: boolean; terminating?: boolean; pod?: string }>,
): KubeObject {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: sliceName,
      namespace,
      labels: { "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" },
    },
    addressType: "IPv4",
    ports: ports.length ? ports.map((p) => ({ name: p.name ?? "", port: p.port, protocol: "TCP" })) : null,
    endpoints: endpoints.length
      ? endpoints.map((e) => {
          const ready = e.ready ?? true;
          return {
            addresses: [e.ip],
            conditions: { ready, serving: e.serving ?? ready, terminating: e.terminating ?? false },
            ...(e.pod ? { targetRef: { kind: "Pod", namespace, name: e.pod } } : {}),
          };
        })
      : null,
  };
}

/** Core v1 Endpoints for a service (subsets with addresses / notReadyAddresses and ports). */
export function endpoints(namespace: string, service: string, ports: Array<{ name?: string; port: number }>, ready: string[], notReady: string[] = []): KubeObject {
  const subset: Record<string, unknown> = { ports: ports.map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), port: p.port, protocol: "TCP" })) };
  if (ready.length) subset.addresses = ready.map((ip) => ({ ip }));
  if (notReady.length) subset.notReadyAddresses = notReady.map((ip) => ({ ip }));
  return {
    apiVersion: "v1",
    kind: "Endpoints",
    metadata: { name: service, namespace },
    ...(ready.length || notReady.length ? { subsets: [subset] } : {}),
  };
}

export function pod(namespace: string, name: string, ip?: string): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels: { app: name } },
    spec: { containers: [{ name: "app", image: "registry.example/app:1" }] },
    status: {
      phase: "Running",
      conditions: [{ type: "Ready", status: "True" }],
      ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
    },
  };
}
