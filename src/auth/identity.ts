import { KedgeError } from "../errors.js";
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

/**
 * A refusal of a caller whose token was verified (it lacked a permission the route asks): the
 * audit log names whom it refused. Clients see it as the KedgeError it wraps.
 */
export class CallerRefused extends KedgeError {
  constructor(
    cause: KedgeError,
    readonly identity: Identity,
  ) {
    super(cause.type, cause.status, cause.message);
  }
}
