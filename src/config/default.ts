/**
 * The embedded default config: `kedge` with no config file serves a built-in demo backend through
 * the proxy on loopback, so a fresh checkout shows a working request in one command.
 */
export const demoPorts = { http: 8080, admin: 8081, demoBackend: 8090 } as const;

export const embeddedDefaultConfig = {
  server: {
    bind_address: "127.0.0.1",
    http_port: demoPorts.http,
    admin_port: demoPorts.admin,
    demo_backend_port: demoPorts.demoBackend,
  },
  http: {
    backends: [{ name: "demo", static: { addresses: [`127.0.0.1:${demoPorts.demoBackend}`] } }],
    routes: [{ backend_name: "demo", path_rules: ["/*"] }],
  },
};
