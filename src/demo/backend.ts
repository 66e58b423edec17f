/**
 * kedge's built-in demo backend (kedge Go's e2e test backend contract): GET /?name=X → "Hello X!".
 * Started only when the config sets server.demo_backend_port, as the embedded default config does.
 */
export function startDemoBackend(port: number): { port: number; stop: () => void } {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch(req) {
      const url = new URL(req.url);
      const name = url.searchParams.get("name") ?? "world";
      return new Response(`Hello ${name}!\n`, {
        headers: { "content-type": "text/plain; charset=utf-8", "x-demo-forwarded-for": req.headers.get("x-forwarded-for") ?? "" },
      });
    },
  });
  return { port: server.port!, stop: () => server.stop(true) };
}
