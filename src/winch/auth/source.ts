/** What an auth source gives winch to present for a route. */
export interface Credential {
  /** The whole header value to inject, e.g. "Bearer abc" (dummy: its value verbatim). Absent when the source yields only a client certificate. */
  readonly header?: string;
  /** A client certificate (PEM) for winch's TLS connection to kedge: a kubeconfig user's cert, usable as proxy_auth only. */
  readonly clientCert?: { readonly cert: string; readonly key: string };
}

/** A named credential from winch's auth_sources. */
export interface AuthSource {
  readonly name: string;
  /**
   * The credential to use now, refreshed first when it expires soon. Cheap when cached. Rejects
   * with an Error whose message names the source and says what to fix (never containing a secret).
   */
  credential(): Promise<Credential>;
  /** Stops timers and callback listeners. */
  close(): void;
}
