import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import type { SecureContextOptions } from "node:tls";

export interface H2SessionOptions {
  host: string;
  port: number;
  /** Node TLS options; absent: h2c (prior knowledge). */
  tls?: SecureContextOptions & { servername?: string; rejectUnauthorized?: boolean };
  connectTimeoutMs: number;
}

export interface H2SessionStats {
  connected: boolean;
  activeStreams: number;
}

/**
 * One shared HTTP/2 session per endpoint (gRPC multiplexes every call over it), connected as soon
 * as the endpoint appears, as kedge Go did. A session that closes or receives GOAWAY is replaced
 * on the next call; streams already on the old session finish there.
 */
export class H2Session {
  private session: ClientHttp2Session | undefined;
  private ready: Promise<ClientHttp2Session> | undefined;
  private active = 0;
  private closed = false;

  constructor(readonly options: H2SessionOptions) {
    void this.connect().catch(() => {}); // warm: failures surface on the first call
  }

  get stats(): H2SessionStats {
    return { connected: !!this.session && !this.session.closed && !this.session.destroyed, activeStreams: this.active };
  }

  private connect(): Promise<ClientHttp2Session> {
    if (this.ready) return this.ready;
    const { host, port, tls, connectTimeoutMs } = this.options;
    const authority = `${tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
    this.ready = new Promise<ClientHttp2Session>((resolve, reject) => {
      const session = http2.connect(authority, { ...tls, ALPNProtocols: ["h2"] } as http2.SecureClientSessionOptions);
      const timer = setTimeout(() => {
        session.destroy();
        reject(new Error(`dial ${host}:${port} timed out`));
      }, connectTimeoutMs);
      const forget = () => {
        if (this.session === session) this.session = undefined;
        if (this.ready === pending) this.ready = undefined;
      };
      session.once("connect", () => {
        clearTimeout(timer);
        this.session = session;
        resolve(session);
      });
      session.once("error", (err) => {
        clearTimeout(timer);
        forget();
        reject(err);
      });
      session.on("goaway", forget);
      session.once("close", () => {
        clearTimeout(timer);
        forget();
        reject(new Error("session closed"));
      });
    });
    const pending = this.ready;
    return pending;
  }

  /** Opens a stream for one call; rejects when the endpoint cannot be reached. */
  async request(headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream> {
    if (this.closed) throw new Error("backend pool closed");
    const session = await this.connect();
    const stream = session.request(headers, { endStream: false });
    this.active++;
    stream.once("close", () => this.active--);
    return stream;
  }

  close(): void {
    this.closed = true;
    this.session?.close(); // GOAWAY: in-flight streams finish
    this.ready = undefined;
  }
}
