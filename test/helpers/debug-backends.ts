export interface DebugEndpoint {
  address: string;
  /** A failover tier's endpoint: its tier (1…); absent for the backend's own. */
  tier?: number;
  healthy: boolean;
  outstanding: number;
  ejected: boolean;
  ejections: number;
  ejectionMs: number;
  healthCheck?: "passing" | "failing";
  /** With workers: each worker's own view of the endpoint. */
  workers?: Array<Omit<DebugEndpoint, "address" | "workers"> & { worker: string }>;
}

/** A backend's endpoints as the admin port's /debug/backends shows them. */
export async function debugEndpoints(adminPort: number, kind: "http" | "grpc", backend: string): Promise<DebugEndpoint[]> {
  const view = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/backends`)).json()) as Record<string, Array<{ name: string; endpoints: DebugEndpoint[] }>>;
  return view[kind].find((b) => b.name === backend)!.endpoints;
}
