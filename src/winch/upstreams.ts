import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { rootCertificates, type ConnectionOptions } from "node:tls";
import { create } from "@bufbuild/protobuf";
import { GrpcBackendSchema, HttpBackendSchema } from "../gen/kedge/config/v1/backend_pb.js";
import type { WinchServer } from "../gen/kedge/winch/v1/winch_pb.js";
import { GrpcBackend } from "../backend/grpc-backend.js";
import { HttpBackend, type TlsMaterial } from "../backend/http-backend.js";
import { kedgeHostPort } from "../config/kedge-url.js";
import { AdhocBackends } from "../runtime.js";
import type { Credential } from "./auth/source.js";

type ClientCert = Credential["clientCert"];

/**
 * winch's connections to kedges, kept warm and reused: one HTTP/1.1 pool and one HTTP/2 session
 * set per kedge and client identity (a route whose proxy_auth is a kubeconfig user's certificate
 * presents that instead of winch's own), plus plain connections for hosts that go direct.
 */
export class KedgeUpstreams {
  private readonly roots: string[];
  private readonly ownCert: { cert: string; key: string } | undefined;
  private readonly http = new Map<string, HttpBackend>();
  private readonly grpc = new Map<string, GrpcBackend>();
  private readonly direct = new AdhocBackends((host, port) => new HttpBackend(create(HttpBackendSchema, { name: "direct", resolver: { case: "host", value: { dnsName: host, port } } })));

  constructor(server: WinchServer | undefined) {
    // Extra roots add to the system ones: a laptop reaches clusters with public and private certs alike.
    this.roots = [...rootCertificates, ...(server?.caFiles ?? []).map((f) => readFileSync(f, "utf8"))];
    this.ownCert = server?.clientCertFile ? { cert: readFileSync(server.clientCertFile, "utf8"), key: readFileSync(server.clientKeyFile, "utf8") } : undefined;
  }

  /** Both present the same certificate and trust the same roots: connections of one serve the other's config. */
  sameTlsAs(other: KedgeUpstreams): boolean {
    const a = this.ownCert;
    const b = other.ownCert;
    return a?.cert === b?.cert && a?.key === b?.key && this.roots.length === other.roots.length && this.roots.every((r, i) => r === other.roots[i]);
  }

  private material(cert: ClientCert): TlsMaterial {
    const identity = cert ?? this.ownCert;
    return { ca: this.roots, cert: identity?.cert, key: identity?.key };
  }

  private config(kedge: URL) {
    const tls = kedge.protocol === "https:";
    const { host, port } = kedgeHostPort(kedge);
    return { name: kedge.host, resolver: { case: "host" as const, value: { dnsName: host, port } }, security: tls ? {} : undefined };
  }

  private cached<B extends { start(): void }>(map: Map<string, B>, kedge: URL, cert: ClientCert, make: () => B): B {
    const key = cert ? `${kedge.origin}|${cert.cert}` : kedge.origin;
    let backend = map.get(key);
    if (!backend) {
      backend = make();
      backend.start();
      map.set(key, backend);
    }
    return backend;
  }

  httpTo(kedge: URL, cert: ClientCert): HttpBackend {
    return this.cached(this.http, kedge, cert, () => new HttpBackend(create(HttpBackendSchema, this.config(kedge)), this.material(cert)));
  }

  grpcTo(kedge: URL, cert: ClientCert): GrpcBackend {
    return this.cached(this.grpc, kedge, cert, () => new GrpcBackend(create(GrpcBackendSchema, this.config(kedge)), this.material(cert)));
  }

  /** A host no route maps, reached as a plain forward proxy would. */
  directTo(host: string, port: number): HttpBackend {
    return this.direct.get(host, port);
  }

  /** node:tls options for a tunnel to the kedge (CONNECT). */
  tlsOptions(kedge: URL, cert: ClientCert): ConnectionOptions & { host: string; port: number } {
    const { host, port } = kedgeHostPort(kedge);
    return { host, port, servername: isIP(host) ? undefined : host, ...this.material(cert), ALPNProtocols: ["http/1.1"] };
  }

  close(): void {
    for (const b of this.http.values()) b.close();
    for (const b of this.grpc.values()) b.close();
    this.http.clear();
    this.grpc.clear();
    this.direct.close();
  }
}
