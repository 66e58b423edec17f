import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadWinchConfig } from "../src/winch/config.ts";
import { reloadWinch } from "../src/winch/reload.ts";
import { startWinch, type Winch } from "../src/winch/winch.ts";
import { ensureBinary, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { curl } from "./helpers/curl.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// winch reloads as kedge does: SIGHUP or a change to its config file swaps in the new routes and
// auth sources; a bad config is refused with its field path and the old one keeps serving; the
// connections to kedges whose TLS settings did not change stay open.

const dir = mkdtempSync(join(tmpdir(), "winch-reload-"));
// A plain-HTTP stand-in for a cluster's kedge: it counts the connections winch opens to it.
let kedge: Upstream;

beforeAll(async () => {
  kedge = await startUpstream("kedge");
});

afterAll(async () => {
  await kedge?.close();
});

const server = { bind_address: "127.0.0.1", http_port: 0, grpc_port: 0, unknown_hosts: "REFUSE", log_level: "error" };
const route = (key: string) => ({ direct: { key, url: `http://127.0.0.1:${kedge.port}` }, proxy_auth: "kedge" });
const config = (keys: string[], token = "t1") => ({ server, routes: keys.map(route), auth_sources: [{ name: "kedge", token: { token } }] });
const via = (w: { http: number }, host: string) => curl(["-x", `http://127.0.0.1:${w.http}`, `http://${host}/`]);

describe("winch reload (in process)", () => {
  let winch: Winch;
  const file = join(dir, "winch.json");
  beforeAll(async () => {
    writeFileSync(file, JSON.stringify(config(["a.example.com"])));
    winch = await startWinch(loadWinchConfig({ configFile: file }));
  });
  afterAll(() => winch?.close());

  it("serves new routes and credentials, keeping the connection to an unchanged kedge", async () => {
    expect((await via(winch.ports, "a.example.com")).status).toBe(200);
    expect((await via(winch.ports, "b.example.com")).headers["x-winch-error-type"]).toBe("unknown-host");
    const opened = kedge.connections();
    writeFileSync(file, JSON.stringify(config(["a.example.com", "b.example.com"], "t2")));
    expect(reloadWinch(winch, { configFile: file })).toBeUndefined();
    const b = await via(winch.ports, "b.example.com");
    expect(b.status).toBe(200);
    expect(JSON.parse(b.body).headers["proxy-authorization"]).toBe("Bearer t2");
    expect((await via(winch.ports, "a.example.com")).status).toBe(200);
    expect(kedge.connections()).toBe(opened);
  });

  it("refuses a bad config with its field path, and the old one keeps serving", async () => {
    writeFileSync(file, JSON.stringify({ ...config(["a.example.com"]), routes: [route("a.example.com"), { direct: { key: "c.example.com", url: "nope" } }] }));
    expect(reloadWinch(winch, { configFile: file })?.problems.join("\n")).toContain('routes[1].direct.url: "nope" is not an http(s) URL');
    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(kubeconfig, "apiVersion: v1\nkind: Config\nusers: []\n");
    writeFileSync(file, JSON.stringify({ ...config(["c.example.com"]), auth_sources: [{ name: "kedge", kube: { user: "nobody", path: kubeconfig } }] }));
    expect(reloadWinch(winch, { configFile: file })?.problems.join("\n")).toContain("auth_sources[0].kube");
    expect((await via(winch.ports, "b.example.com")).status).toBe(200);
    expect((await via(winch.ports, "c.example.com")).headers["x-winch-error-type"]).toBe("unknown-host");
  });
});

describe("kedge winch (the binary)", () => {
  let w: Running | undefined;
  const file = join(dir, "winch-binary.json");
  const portOf = (name: string) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(w!.stdout())![1]);
  beforeAll(async () => {
    ensureBinary();
    writeFileSync(file, JSON.stringify({ ...config(["a.example.com"]), server: { ...server, log_level: "info" } }));
    w = runBinary(["winch", "--config", file], dir);
    await waitFor(() => /grpc=\d+/.test(w!.stdout()), "winch to listen", w);
  });
  afterAll(() => void w?.proc.kill("SIGKILL"));

  it("reloads on SIGHUP instead of exiting", async () => {
    const ports = { http: portOf("http") };
    const output = () => w!.stdout() + w!.stderr();
    expect(output()).not.toContain("winch config reloaded");
    w!.proc.kill("SIGHUP");
    await waitFor(() => output().includes("winch config reloaded"), "the SIGHUP reload", w);
    expect(w!.proc.exitCode).toBeNull();
    expect((await via(ports, "a.example.com")).status).toBe(200);
  });

  it("reloads when its config file changes, and refuses a bad one naming the field, still serving", async () => {
    const ports = { http: portOf("http") };
    writeFileSync(file, JSON.stringify(config(["a.example.com", "b.example.com", "d.example.com"])));
    await waitFor(async () => (await via(ports, "d.example.com")).status === 200, "the changed file to be served", w);
    writeFileSync(file, JSON.stringify({ ...config([]), routes: [route("a.example.com"), { direct: { url: "http://x" } }] }));
    await waitFor(() => w!.stderr().includes("routes[1].direct.key: required"), "the bad config to be refused", w);
    expect((await via(ports, "d.example.com")).status).toBe(200);
    expect(w!.proc.exitCode).toBeNull();
  });
});
