import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import type { SecureContextOptions } from "node:tls";

export interface H2SessionOptions {
  host: string;
  port: number;
  /** Node TLS options; absent: h2c (prior knowledge). */
  tls?: SecureContextOptions & { servername?: string; rejectUnauthorized?: boolean };
  connectTimeoutMs: number;
  /** First reconnect delay after a lost session; doubles per failure up to maxReconnectMs. */
  reconnectBaseMs?: number;
  maxReconnectMs?: number;
}

export interface H2SessionStats {
  connected: boolean;
  activeStreams: number;
  /** Sessions opened over this endpoint's lifetime (reconnects and GOAWAY replacements). */
  sessionsOpened: number;
}

/**
 * One shared HTTP/2 session per endpoint (gRPC multiplexes every call over it), connected as soon
 * as the endpoint appears, as kedge Go did. When the session is lost it is re-dialled in the
 * background with jittered exponential backoff, so the endpoint is warm again before the next
 * call needs it. On GOAWAY a new session is opened at once for new calls while streams already on
 * the old one finish there (the server promised to complete them).
 */
export class H2Session {
  private session: ClientHttp2Session | undefined;
  private ready: Promise<ClientHttp2Session> | undefined;
  private active = 0;
  private opened = 0;
  private closed = false;
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly options: H2SessionOptions) {
    this.warm();
  }

  get stats(): H2SessionStats {
    const s = this.session;
    return { connected: !!s && !s.closed && !s.destroyed, activeStreams: this.active, sessionsOpened: this.opened };
  }

  private warm(): void {
    void this.connect().catch(() => {}); // failures schedule a retry; calls see them too
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retryTimer) return;
    const base = this.options.reconnectBaseMs ?? 100;
    const max = this.options.maxReconnectMs ?? 10_000;
    const delay = Math.min(max, base * 2 ** Math.min(this.failures, 16));
    this.failures++;
    // Jitter (50–100%) so every kedge replica does not re-dial a restarted pod in the same instant.
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.closed && !this.ready) this.warm();
    }, delay * (0.5 + Math.random() / 2));
    this.retryTimer.unref?.();
  }

  private connect(): Promise<ClientHttp2Session> {
    if (this.ready) return this.ready;
    const { host, port, tls, connectTimeoutMs } = this.options;
    const authority = `${tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
    let connected = false;
    const pending = new Promise<ClientHttp2Session>((resolve, reject) => {
      const session = http2.connect(authority, { ...tls, ALPNProtocols: ["h2"] } as http2.SecureClientSessionOptions);
      const timer = setTimeout(() => {
        session.destroy();
        reject(new Error(`dial ${host}:${port} timed out`));
      }, connectTimeoutMs);
      // Detaches this session so the next call (or the reconnect timer) dials a fresh one.
      const forget = () => {
        clearTimeout(timer);
        if (this.session === session) this.session = undefined;
        if (this.ready === pending) this.ready = undefined;
      };
      session.once("connect", () => {
        clearTimeout(timer);
        connected = true;
        this.failures = 0;
        this.opened++;
        this.session = session;
        resolve(session);
      });
      session.once("error", (err) => {
        forget();
        reject(err);
      });
      session.on("goaway", () => {
        forget();
        if (!this.closed) this.warm();
      });
      session.once("close", () => {
        const wasCurrent = this.ready === pending;
        forget();
        reject(new Error("session closed"));
        // Lost (not replaced after GOAWAY, not closed by us): re-dial in the background.
        if (wasCurrent || !connected) this.scheduleReconnect();
      });
    });
    this.ready = pending;
    return pending;
  }

  /** Opens a stream for one call; rejects when the endpoint cannot be reached. */
  async request(headers: OutgoingHttpHeaders): Promise<ClientHttp2Stream> {
    if (this.closed) throw new Error("backend pool closed");
    let session = await this.connect();
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: false });
    } catch {
      // The session received GOAWAY (or died) before its event reached us; nothing was sent.
      this.detach(session);
      session = await this.connect();
      stream = session.request(headers, { endStream: false });
    }
    this.active++;
    stream.once("close", () => this.active--);
    return stream;
  }

  private detach(session: ClientHttp2Session): void {
    if (this.session !== session) return;
    this.session = undefined;
    this.ready = undefined;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.session?.close(); // GOAWAY: in-flight streams finish
    this.ready = undefined;
  }
}
