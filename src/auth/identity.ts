import type { CertIdentity } from "../net/peer-cert.js";

/** Who a verified bearer token says the caller is. */
export interface TokenIdentity {
  readonly kind: "jwt" | "static";
  readonly subject: string;
  readonly permissions: ReadonlySet<string>;
}

export interface Identity {
  readonly cert?: CertIdentity;
  readonly token?: TokenIdentity;
}
