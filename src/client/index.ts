import { kedgeFetch, type FetchInput } from "./fetch.js";
import { KedgeAgents } from "./pool.js";
import { KedgeRouting, loadClientConfig, type KedgeClientOptions } from "./routing.js";

export { KedgeError, type KedgeErrorType } from "../errors.js";
export type { FetchInput } from "./fetch.js";
export type { KedgeClientOptions, KedgeTarget, KedgeTls, Target } from "./routing.js";

/**
 * kedge's native client: winch's routes, auth sources and TLS identity inside the calling
 * service. One object per process is enough; it keeps the connections to each kedge warm.
 */
export class KedgeClient {
  /** Where a host goes and what it carries; the transports share it. */
  readonly routing: KedgeRouting;
  private readonly agents = new KedgeAgents();

  constructor(options: KedgeClientOptions) {
    this.routing = new KedgeRouting(loadClientConfig(options), { home: options.home, env: options.env, log: options.log, openBrowser: options.openBrowser });
  }

  /**
   * WHATWG fetch through kedge. A mapped host's request goes to its kedge over TLS; kedge's own
   * refusals reject with a KedgeError (type, status, message), while the backend's answers, 4xx
   * and 5xx included, resolve as ordinary Responses. Network failures reject with a TypeError.
   */
  fetch(input: FetchInput, init?: RequestInit): Promise<Response> {
    return kedgeFetch(this.routing, this.agents, input, init);
  }

  /** Closes the connections and stops the auth sources' background refreshes. */
  close(): void {
    this.agents.close();
    this.routing.close();
  }
}

/** Reads and validates the options (a ConfigError names each bad field) and returns a client. */
export function createKedgeClient(options: KedgeClientOptions): KedgeClient {
  return new KedgeClient(options);
}
