// The Kubernetes artefacts in deploy/, checked with the real kubectl: `kubectl apply --dry-run=client
// -k deploy/` must pass, and the rendered objects must have the properties the deployment relies on.
// No cluster is needed: apply talks to a stub API server started here, which answers discovery for
// the built-in kinds and "not found" for every object (so each one would be created).
import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { loadConfig } from "../src/config/load.ts";
import { makeTestPki } from "./helpers/certs.ts";

// Rendered Kubernetes objects are checked field by field; their shape is Kubernetes', not ours.
type K8sObject = Record<string, any>;

const root = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "kedge-deploy-"));

/**
 * The ConfigMap's config as kedge loads it in the pod. Its TLS files come from the kedge-tls secret
 * and its client CA from kedge-client-ca, mounted there; kedge checks they can be read, so test
 * files stand in for them here.
 */
function loadInPod(text: string) {
  const json = parse(text);
  const pki = makeTestPki();
  const inPod = { tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile] };
  const config = loadConfig({ embedded: { ...json, server: { ...json.server, ...inPod } } });
  Object.assign(config.server!, {
    tlsCertFile: json.server.tls_cert_file,
    tlsKeyFile: json.server.tls_key_file,
    tlsClientCaFiles: json.server.tls_client_ca_files,
  });
  return config;
}

/** kubectl is required: CI installs it, and a missing one must fail these tests, not skip them. */
function kubectlPath(): string {
  const path = Bun.which("kubectl");
  if (!path) {
    throw new Error(
      "kubectl not found on PATH: test/deploy.test.ts validates deploy/ with the real kubectl (no cluster needed); install it (Debian package: kubectl)",
    );
  }
  return path;
}

interface Result {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs kubectl asynchronously: the stub API server below lives in this process's event loop. */
async function kubectl(args: string[]): Promise<Result> {
  const proc = Bun.spawn([kubectlPath(), ...args], {
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
    // No ambient kubeconfig or cache: only what the arguments name.
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, KUBECONFIG: join(dir, "no-kubeconfig") },
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}

const rendered = new Map<string, K8sObject[]>();

/** `kubectl kustomize <dir>`, parsed; fails on any kustomize or YAML error. */
async function render(kustomization: string): Promise<K8sObject[]> {
  const cached = rendered.get(kustomization);
  if (cached) return cached;
  const r = await kubectl(["kustomize", kustomization]);
  if (r.exitCode !== 0) throw new Error(`kubectl kustomize ${kustomization} exited ${r.exitCode}:\n${r.stderr}`);
  const docs = parseAllDocuments(r.stdout);
  if (!Array.isArray(docs)) throw new Error(`kubectl kustomize ${kustomization}: no documents`);
  for (const d of docs) if (d.errors.length > 0) throw new Error(`kubectl kustomize ${kustomization}: ${d.errors[0].message}`);
  const objects = docs.map((d) => d.toJS() as K8sObject).filter((o) => o !== null);
  rendered.set(kustomization, objects);
  return objects;
}

function only(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected exactly one ${kind}, found ${found.length}`);
  return found[0];
}

// --- the stub API server: discovery for the kinds kedge's manifests may use, 404 for objects ---

const discovery: Record<string, Array<{ name: string; kind: string; namespaced: boolean }>> = {
  v1: [
    { name: "namespaces", kind: "Namespace", namespaced: false },
    { name: "serviceaccounts", kind: "ServiceAccount", namespaced: true },
    { name: "configmaps", kind: "ConfigMap", namespaced: true },
    { name: "secrets", kind: "Secret", namespaced: true },
    { name: "services", kind: "Service", namespaced: true },
    { name: "endpoints", kind: "Endpoints", namespaced: true },
  ],
  "apps/v1": [
    { name: "daemonsets", kind: "DaemonSet", namespaced: true },
    { name: "deployments", kind: "Deployment", namespaced: true },
  ],
  "rbac.authorization.k8s.io/v1": [
    { name: "clusterroles", kind: "ClusterRole", namespaced: false },
    { name: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: false },
    { name: "roles", kind: "Role", namespaced: true },
    { name: "rolebindings", kind: "RoleBinding", namespaced: true },
  ],
  "policy/v1": [{ name: "poddisruptionbudgets", kind: "PodDisruptionBudget", namespaced: true }],
  "networking.k8s.io/v1": [{ name: "networkpolicies", kind: "NetworkPolicy", namespaced: true }],
  "discovery.k8s.io/v1": [{ name: "endpointslices", kind: "EndpointSlice", namespaced: true }],
};
const requests: string[] = [];

function stubApiServer(req: Request): Response {
  const path = new URL(req.url).pathname;
  requests.push(`${req.method} ${path}`);
  const json = (body: unknown, status = 200) => Response.json(body, { status });
  const resources = (groupVersion: string) => ({
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion,
    resources: discovery[groupVersion].map((r) => ({ ...r, singularName: r.kind.toLowerCase(), verbs: ["get", "list", "watch", "create", "update", "patch", "delete"] })),
  });
  if (path === "/version") return json({ major: "1", minor: "32", gitVersion: "v1.32.0-stub" });
  // Legacy (unaggregated) discovery: kubectl asks for the aggregated form first and accepts these.
  if (path === "/api") return json({ kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] });
  if (path === "/api/v1") return json(resources("v1"));
  if (path === "/apis") {
    const groups = Object.keys(discovery)
      .filter((gv) => gv.includes("/"))
      .map((gv) => {
        const [group, version] = gv.split("/");
        const v = { groupVersion: gv, version };
        return { name: group, versions: [v], preferredVersion: v };
      });
    return json({ kind: "APIGroupList", apiVersion: "v1", groups });
  }
  const group = /^\/apis\/([^/]+\/[^/]+)$/.exec(path);
  if (group && discovery[group[1]]) return json(resources(group[1]));
  return json({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", reason: "NotFound", message: `${path} not found`, code: 404 }, 404);
}

let server: ReturnType<typeof Bun.serve>;
let kubeconfig: string;

beforeAll(() => {
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: stubApiServer });
  kubeconfig = join(dir, "kubeconfig");
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "stub", cluster: { server: `http://127.0.0.1:${server.port}` } }],
      users: [{ name: "stub", user: {} }],
      contexts: [{ name: "stub", context: { cluster: "stub", user: "stub" } }],
      "current-context": "stub",
    }),
  );
});

afterAll(() => server?.stop(true));

/**
 * `kubectl apply --dry-run=client -k deploy/` as a user runs it, plus what no cluster needs:
 * --kubeconfig at the stub server, a private --cache-dir, and --validate=false since the stub has
 * no OpenAPI schema (the field checks below stand in for it).
 */
async function applyDryRun(kustomization: string): Promise<Result> {
  return kubectl([
    "apply", "--dry-run=client", "-k", kustomization,
    "--kubeconfig", kubeconfig, "--cache-dir", join(dir, "cache"), "--validate=false",
  ]);
}

describe("kubectl apply --dry-run=client", () => {
  for (const kustomization of ["deploy/", "deploy/deployment"]) {
    it(`accepts -k ${kustomization}`, async () => {
      const r = await applyDryRun(kustomization);
      expect({ exitCode: r.exitCode, stderr: r.stderr }).toEqual({ exitCode: 0, stderr: "" });
      const workload = kustomization === "deploy/" ? "daemonset.apps/kedge" : "deployment.apps/kedge";
      for (const object of ["namespace/kedge", "serviceaccount/kedge", "clusterrole.rbac.authorization.k8s.io/kedge",
        "clusterrolebinding.rbac.authorization.k8s.io/kedge", "service/kedge", "poddisruptionbudget.policy/kedge",
        "networkpolicy.networking.k8s.io/kedge", workload]) {
        expect(r.stdout).toContain(`${object} created (dry run)`);
      }
      expect(r.stdout).toMatch(/^configmap\/kedge-config-[a-z0-9]+ created \(dry run\)$/m);
      // It did ask the (stub) server whether the objects exist, as against a real cluster.
      expect(requests).toContain("GET /api/v1/namespaces/kedge");
    });
  }
});

for (const flavour of [
  { dir: "deploy/", workloadKind: "DaemonSet", externalTrafficPolicy: "Local" },
  { dir: "deploy/deployment", workloadKind: "Deployment", externalTrafficPolicy: undefined },
]) {
  describe(`kubectl kustomize ${flavour.dir}`, () => {
    const objects = () => render(flavour.dir);
    const podTemplate = async () => only(await objects(), flavour.workloadKind).spec.template;
    const container = async () => {
      const containers = (await podTemplate()).spec.containers as K8sObject[];
      expect(containers.map((c) => c.name)).toEqual(["kedge"]);
      return containers[0];
    };
    const portNumber = async (name: string) => {
      const port = ((await container()).ports as K8sObject[]).find((p) => p.name === name);
      if (!port) throw new Error(`no container port named ${name}`);
      return port.containerPort as number;
    };

    it("renders the expected objects, all labelled, namespaced in kedge, and no Secret", async () => {
      const objs = await objects();
      expect(objs.map((o) => o.kind).sort()).toEqual(
        ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount", flavour.workloadKind].sort(),
      );
      expect(only(objs, "Namespace").metadata.name).toBe("kedge");
      for (const o of objs) {
        expect(o.metadata.labels?.["app.kubernetes.io/name"]).toBe("kedge");
        if (!["Namespace", "ClusterRole", "ClusterRoleBinding"].includes(o.kind)) expect(o.metadata.namespace).toBe("kedge");
      }
    });

    it("grants only get/list/watch on services, endpoints and endpointslices, to the kedge ServiceAccount", async () => {
      const objs = await objects();
      const role = only(objs, "ClusterRole");
      const granted = new Set<string>();
      for (const rule of role.rules as K8sObject[]) {
        expect(Object.keys(rule).sort()).toEqual(["apiGroups", "resources", "verbs"]);
        expect([...rule.verbs].sort()).toEqual(["get", "list", "watch"]);
        for (const group of rule.apiGroups) for (const resource of rule.resources) granted.add(`${group}/${resource}`);
      }
      expect([...granted].sort()).toEqual(["/endpoints", "/services", "discovery.k8s.io/endpointslices"]);

      const binding = only(objs, "ClusterRoleBinding");
      expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name });
      expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "kedge", namespace: "kedge" }]);
      const account = only(objs, "ServiceAccount");
      expect(account.metadata.name).toBe("kedge");
      const pod = (await podTemplate()).spec;
      expect(pod.serviceAccountName).toBe("kedge");
      expect(pod.automountServiceAccountToken).toBe(true);
    });

    it("exposes 443 through a LoadBalancer Service onto the container port named https, selecting the pods", async () => {
      const objs = await objects();
      const service = only(objs, "Service");
      expect(service.spec.type).toBe("LoadBalancer");
      expect(service.spec.externalTrafficPolicy).toBe(flavour.externalTrafficPolicy);
      expect(service.spec.ports).toEqual([{ name: "https", port: 443, protocol: "TCP", targetPort: "https" }]);
      expect(await portNumber("https")).toBe(8443);
      expect(await portNumber("admin")).toBe(8081);

      const template = await podTemplate();
      const selector = service.spec.selector as Record<string, string>;
      expect(Object.keys(selector).length).toBeGreaterThan(0);
      expect(template.metadata.labels).toMatchObject(selector);
      const workloadSelector = only(objs, flavour.workloadKind).spec.selector;
      expect(Object.keys(workloadSelector)).toEqual(["matchLabels"]);
      expect(template.metadata.labels).toMatchObject(workloadSelector.matchLabels);
    });

    it("runs as non-root with a read-only root filesystem and no capabilities", async () => {
      const pod = (await podTemplate()).spec;
      const c = await container();
      const effective = { ...pod.securityContext, ...c.securityContext };
      expect(effective.runAsNonRoot).toBe(true);
      expect(effective.runAsUser).toBe(65532);
      expect(effective.runAsGroup).toBe(65532);
      expect(effective.seccompProfile).toEqual({ type: "RuntimeDefault" });
      expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
      expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
      expect(c.securityContext.capabilities).toEqual({ drop: ["ALL"] });
      expect(c.securityContext.privileged).toBeUndefined();
      expect(pod.hostNetwork).toBeUndefined();
      expect(pod.terminationGracePeriodSeconds).toBe(30);
      expect(c.lifecycle).toBeUndefined(); // no preStop: the distroless image has no shell
      // Guaranteed QoS with whole CPUs: the CPU limit is what workers: auto sizes itself by.
      expect(c.resources).toEqual({ requests: { cpu: "2", memory: "256Mi" }, limits: { cpu: "2", memory: "256Mi" } });
    });

    it("runs the image of this release (package.json's version), never :latest", async () => {
      const { version } = await Bun.file(join(root, "package.json")).json();
      expect((await container()).image).toBe(`ghcr.io/kedge-proxy/kedge:${version}`);
      const r = await kubectl(["kustomize", flavour.dir]);
      expect(r.stdout).not.toContain(":latest");
    });

    it("limits voluntary disruptions to one kedge at a time", async () => {
      const pdb = only(await objects(), "PodDisruptionBudget");
      expect(pdb.spec.maxUnavailable).toBe(1);
      expect((await podTemplate()).metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);
    });

    it("admits the proxy port from anywhere and the admin port only from the monitoring namespace", async () => {
      const policy = only(await objects(), "NetworkPolicy");
      expect((await podTemplate()).metadata.labels).toMatchObject(policy.spec.podSelector.matchLabels);
      expect(policy.spec.policyTypes).toEqual(["Ingress"]);
      const rules = policy.spec.ingress as K8sObject[];
      const admitting = (port: string) => rules.filter((r) => (r.ports as K8sObject[]).some((p) => p.port === port));
      expect(admitting("https")).toEqual([{ ports: [{ port: "https", protocol: "TCP" }] }]);
      // The namespace comes from the kustomization's monitoringNamespace setting, which stays out of the output.
      expect(admitting("admin")).toEqual([{
        from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }],
        ports: [{ port: "admin", protocol: "TCP" }],
      }]);
      expect(rules).toHaveLength(2);
    });

    it("probes GET /_healthz on the admin port", async () => {
      const c = await container();
      for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"]) {
        expect(c[probe]?.httpGet).toEqual({ path: "/_healthz", port: "admin" });
      }
    });

    it("mounts the generated ConfigMap at the --config file's directory and the kedge-tls secret at the TLS files'", async () => {
      const objs = await objects();
      const configMap = only(objs, "ConfigMap");
      expect(configMap.metadata.name).toMatch(/^kedge-config-[a-z0-9]{10}$/);
      const c = await container();
      expect(c.args).toEqual(["--config", "/etc/kedge/config.yaml"]);
      const volumes = (await podTemplate()).spec.volumes as K8sObject[];
      const mounts = c.volumeMounts as K8sObject[];
      const mountOf = (volume: (v: K8sObject) => boolean) => {
        const v = volumes.find(volume);
        if (!v) throw new Error("volume not found");
        const m = mounts.find((mount) => mount.name === v.name);
        if (!m) throw new Error(`volume ${v.name} is not mounted`);
        return { volume: v, mount: m };
      };

      const config = mountOf((v) => v.configMap !== undefined);
      expect(config.volume.configMap.name).toBe(configMap.metadata.name);
      expect(config.mount).toMatchObject({ mountPath: dirname(c.args[1]), readOnly: true });
      expect(config.mount.subPath).toBeUndefined(); // a subPath mount would never see ConfigMap updates
      expect(Object.keys(configMap.data)).toEqual([basename(c.args[1])]);

      const tls = mountOf((v) => v.secret?.secretName === "kedge-tls");
      expect(tls.volume.secret.secretName).toBe("kedge-tls");
      expect(tls.mount).toMatchObject({ mountPath: "/etc/kedge/tls", readOnly: true });

      const loaded = loadInPod(configMap.data["config.yaml"]);
      expect(dirname(loaded.server!.tlsCertFile)).toBe(tls.mount.mountPath);
      expect(dirname(loaded.server!.tlsKeyFile)).toBe(tls.mount.mountPath);

      // Client certificates authenticate callers: the CA comes from its own secret.
      const clientCa = mountOf((v) => v.secret?.secretName === "kedge-client-ca");
      expect(clientCa.mount).toMatchObject({ mountPath: "/etc/kedge/client-ca", readOnly: true });
      expect(loaded.server!.tlsClientCaFiles.map((f) => dirname(f))).toEqual([clientCa.mount.mountPath]);
    });

    it("carries a config kedge's own loader accepts, listening where the pod spec expects", async () => {
      const configMap = only(await objects(), "ConfigMap");
      const config = loadInPod(configMap.data["config.yaml"]);
      expect(config.server).toMatchObject({
        bindAddress: "0.0.0.0",
        httpTlsPort: await portNumber("https"),
        adminPort: await portNumber("admin"),
        tlsCertFile: "/etc/kedge/tls/tls.crt",
        tlsKeyFile: "/etc/kedge/tls/tls.key",
      });
      expect(config.server!.httpPort).toBeUndefined();
      // An authenticator guards the listener beyond loopback; nothing opts out of one.
      expect(config.server).toMatchObject({ tlsClientCaFiles: ["/etc/kedge/client-ca/ca.crt"], tlsClientCertRequired: true });
      expect(config.auth?.allowUnauthenticated ?? false).toBe(false);
      const backend = config.http!.backends.find((b) => b.name === "my-svc");
      expect(backend?.resolver).toMatchObject({ case: "k8s", value: { dnsPortName: "my-svc.my-namespace:http" } });
      expect(config.http!.routes.map((r) => r.backendName)).toContain("my-svc");
    });
  });
}

describe("the two flavours", () => {
  it("share one pod template, apart from the Deployment's spread over nodes", async () => {
    const daemonSet = only(await render("deploy/"), "DaemonSet").spec.template;
    const deployment = structuredClone(only(await render("deploy/deployment"), "Deployment").spec.template);
    expect(deployment.spec.topologySpreadConstraints).toHaveLength(1);
    delete deployment.spec.topologySpreadConstraints;
    expect(deployment).toEqual(daemonSet);
  });

  it("deploy/ is the DaemonSet flavour", async () => {
    const top = await kubectl(["kustomize", "deploy/"]);
    const daemonset = await kubectl(["kustomize", "deploy/daemonset"]);
    expect(top.exitCode).toBe(0);
    expect(top.stdout).toBe(daemonset.stdout);
  });
});
