/** kedge Go's k8s resolver target syntax. */
export const expectedTargetFormat = "<service>(|.<namespace>)(|.<whatever suffix>)(|:<port_name>|:<value number>)";

export type TargetPort = { kind: "first" } | { kind: "named"; name: string } | { kind: "number"; port: number };

export interface K8sTarget {
  service: string;
  namespace: string;
  port: TargetPort;
}

/**
 * Parses "svc", "svc.ns", "svc.ns.svc.cluster.local", "svc.ns:8080" or "svc.ns:http" (kedge Go's
 * cases; a port name works here although Go's net/url stopped accepting it). No port: the
 * endpoint's first port, as kedge Go did.
 */
export function parseK8sTarget(target: string): K8sTarget {
  if (target === "") throw new Error("Failed to parse targetEntry. Empty string");
  if (/^[0-9a-z]*:\/\//.test(target)) throw new Error(`Bad targetEntry name. It cannot contain any schema. Expected format: ${expectedTargetFormat}`);
  const colon = target.lastIndexOf(":");
  const host = colon >= 0 ? target.slice(0, colon) : target;
  const portText = colon >= 0 ? target.slice(colon + 1) : "";
  const [service, namespace] = host.split(".");
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(service ?? "")) throw new Error(`"${service}" is not a Kubernetes service name. Expected format: ${expectedTargetFormat}`);
  let port: TargetPort = { kind: "first" };
  if (/^\d+$/.test(portText)) {
    const n = Number(portText);
    if (n < 1 || n > 65535) throw new Error(`port ${portText} is out of range`);
    port = { kind: "number", port: n };
  } else if (portText !== "") {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(portText)) throw new Error(`"${portText}" is not a port number or port name`);
    port = { kind: "named", name: portText };
  }
  return { service, namespace: namespace || "default", port };
}
