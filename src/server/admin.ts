import { Hono } from "hono";
import { configToJson } from "../config/secrets.js";
import type { Runtime } from "../runtime.js";
import { version } from "../version.js";
import type { AuditLog } from "../observe/audit-log.js";
import type { BackendsView } from "./backends-view.js";

/**
 * What the admin port shows. One process answers from its own registry and runtime; a supervisor
 * from its workers' (the config is the same everywhere, so it stays the supervisor's own).
 */
export interface AdminState {
  runtime(): Runtime;
  draining(): boolean;
  /** Why no data port is served now though the process is up (a supervisor whose workers all died and are restarting). */
  notServing?(): string | undefined;
  /** The /metrics exposition. */
  metricsText(): string | Promise<string>;
  backends(): BackendsView | Promise<BackendsView>;
  /** Where the admin port's access decisions are written, when the audit log is on. */
  readonly audit?: AuditLog;
}

/** The admin app: health, version, Prometheus metrics and the live config. Plaintext, meant for the pod network. */
export function adminApp(state: AdminState): Hono {
  const app = new Hono();
  app.get("/_healthz", (c) => {
    const why = state.draining() ? "draining" : state.notServing?.();
    return why === undefined ? c.text("ok\n") : c.text(`${why}\n`, 503);
  });
  app.get("/_version", (c) => c.json({ ...version, configVersion: state.runtime().version }));
  app.get("/metrics", async (c) => c.body(await state.metricsText(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }));
  app.get("/debug/config", (c) => {
    const runtime = state.runtime();
    return c.json({ version: runtime.version, config: configToJson(runtime.config) });
  });
  app.get("/debug/backends", async (c) => c.json(await state.backends()));
  return app;
}
