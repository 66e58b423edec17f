// What a kedge that reads its own config files needs and a worker does not: the loader (YAML,
// valibot, the config's schemas), secret lookup by schema, discovery, the file watches. One
// module, imported lazily by startKedge, so a worker, whose supervisor sends it the config
// loaded, validated and composed, never loads any of it.
export { loadConfig } from "../config/load.js";
export { configSecrets } from "../config/secrets.js";
export { watchConfigFiles, watchedFiles } from "../config/watch.js";
export { startDiscoveredRouting } from "../k8s/discovery.js";
export { startDemoBackend } from "../demo/backend.js";
