import { headWriter } from "../net/head-writer.js";
import type { H1Connection, ExchangeHandlers, UpstreamError } from "../upstream/h1-connection.js";
import type { H1Pool, PoolClient } from "../upstream/h1-pool.js";
import type { ResponseHead } from "../upstream/response-head.js";
import type { Endpoint } from "./endpoint.js";
import type { Probe } from "./health-check.js";

/**
 * One GET of the health path on an endpoint's own pool: the backend's TLS settings and timeouts,
 * a warm keep-alive connection when one is idle. 2xx and 3xx pass.
 */
class HttpCheck implements PoolClient, ExchangeHandlers {
  private conn: H1Connection | undefined;
  private status = 0;
  private settled = false;
  private redialled = false;
  private readonly timer: Timer;

  constructor(
    private readonly pool: H1Pool,
    private readonly path: string,
    private readonly host: string,
    /** What a request to another cluster's kedge carries (x-kedge-hops, its token); undefined elsewhere. */
    private readonly fields: Readonly<Record<string, string>> | undefined,
    timeoutMs: number,
    private readonly done: (problem: string | undefined) => void,
  ) {
    this.timer = setTimeout(() => this.settle(`no answer within ${timeoutMs}ms`), timeoutMs);
    pool.acquire(this);
  }

  granted(conn: H1Connection): void {
    if (this.settled) return conn.pool.release(conn);
    this.conn = conn;
    const w = headWriter.start();
    w.text("GET ");
    w.text(this.path);
    w.text(" HTTP/1.1\r\n");
    w.line("host", this.host);
    w.line("user-agent", "kedge-health-check");
    const fields = this.fields;
    if (fields) for (const name in fields) w.line(name, fields[name]);
    w.crlf();
    conn.begin(w, false, this, true);
  }

  failed(err: UpstreamError): void {
    this.settle(err.message);
  }

  onHead(head: ResponseHead): void {
    this.status = head.status;
  }

  onBody(): boolean {
    return true;
  }

  onEnd(): void {
    this.conn = undefined; // back in its pool
    this.settle(this.status >= 200 && this.status < 400 ? undefined : `answered ${this.status}`);
  }

  onError(err: UpstreamError): void {
    this.conn = undefined;
    // A keep-alive connection the endpoint had closed while idle says nothing of its health.
    if (err.failure === "stale" && !this.redialled && !this.settled) {
      this.redialled = true;
      return this.pool.dial(this);
    }
    this.settle(err.message);
  }

  private settle(problem: string | undefined): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.conn?.abort();
    this.conn = undefined;
    this.done(problem);
  }
}

/** The probe of an HTTP backend's health_check.http; `host` names the Host field for an endpoint. */
export function httpProbe(path: string, host: (endpoint: Endpoint) => string): Probe<H1Pool> {
  return (endpoint, pool, timeoutMs) => new Promise((resolve) => new HttpCheck(pool, path, host(endpoint), endpoint.hop?.fields(undefined, undefined), timeoutMs, resolve));
}
