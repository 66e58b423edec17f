import { Hono } from "hono";
import type { Metrics } from "../observe/metrics.js";
import { configToJson, type Runtime } from "../runtime.js";
import { version } from "../version.js";

export interface AdminState {
  runtime(): Runtime;
  readonly metrics: Metrics;
  draining(): boolean;
}

/** The admin app: health, version, Prometheus metrics and the live config. Plaintext, meant for the pod network. */
export function adminApp(state: AdminState): Hono {
  const app = new Hono();
  app.get("/_healthz", (c) => (state.draining() ? c.text("draining\n", 503) : c.text("ok\n")));
  app.get("/_version", (c) => c.json({ ...version, configVersion: state.runtime().version }));
  app.get("/metrics", (c) => {
    state.metrics.configVersion.set([], state.runtime().version);
    return c.body(state.metrics.registry.render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
  });
  app.get("/debug/config", (c) => {
    const runtime = state.runtime();
    return c.json({ version: runtime.version, config: configToJson(runtime.config) });
  });
  app.get("/debug/backends", (c) => {
    const runtime = state.runtime();
    const view = (b: { name: string; view(): unknown }) => ({ name: b.name, endpoints: b.view() });
    return c.json({ http: [...runtime.httpBackends.values()].map(view), grpc: [...runtime.grpcBackends.values()].map(view) });
  });
  return app;
}
