import { ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "../gen/kedge/admin/v1/admin_pb.js";
import { UsageError } from "./args.js";

/** Lays rows out in aligned columns, the first row being the header. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()).join("\n") + "\n";
}

/**
 * `kedge admin backends|routes|config`: asks a running kedge's AdminService over Connect. `token`
 * (KEDGE_ADMIN_TOKEN) is needed when kedge has a token authenticator.
 */
export async function runAdmin(what: string | undefined, adminAddress: string, token?: string): Promise<string> {
  try {
    return await query(what, adminAddress, token);
  } catch (e) {
    if (e instanceof ConnectError) throw new UsageError(`kedge admin: cannot query ${adminAddress}: ${e.message}`);
    throw e;
  }
}

/** "yes", or "no" with the reason when it is more than a failed dial's backoff. */
function healthyColumn(e: { healthy: boolean; ejected: boolean; healthCheck: string }): string {
  if (e.healthy) return "yes";
  if (e.ejected) return "no (ejected)";
  return e.healthCheck === "failing" ? "no (failing checks)" : "no";
}

async function query(what: string | undefined, adminAddress: string, token: string | undefined): Promise<string> {
  const interceptors: Interceptor[] = token
    ? [(next) => (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      }]
    : [];
  const client = createClient(AdminService, createConnectTransport({ baseUrl: `http://${adminAddress}`, httpVersion: "1.1", interceptors }));
  switch (what) {
    case "backends": {
      const { backends } = await client.listBackends({});
      const rows = [["KIND", "BACKEND", "RESOLVER", "ENDPOINT", "HEALTHY", "IN FLIGHT", "OPEN"]];
      for (const b of backends) {
        if (b.endpoints.length === 0) rows.push([b.kind, b.name, b.resolver, "-", "-", "-", "-"]);
        // A failover tier's endpoint names the tier it came from.
        for (const e of b.endpoints) rows.push([b.kind, b.name, e.tier > 0 ? `${b.failover[e.tier - 1]} (tier ${e.tier})` : b.resolver, e.address, healthyColumn(e), String(e.outstanding), String(e.open)]);
      }
      return table(rows);
    }
    case "routes": {
      const { routes } = await client.listRoutes({});
      return table([["KIND", "#", "BACKEND", "MATCHES"], ...routes.map((r) => [r.kind, String(r.index), r.backendName, r.matcher])]);
    }
    case "config": {
      const { version, config } = await client.getConfig({});
      return `${JSON.stringify({ version: Number(version), config }, null, 2)}\n`;
    }
    default:
      throw new UsageError("usage: kedge admin backends|routes|config [--admin-address host:port]");
  }
}
