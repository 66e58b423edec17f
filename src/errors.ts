/** kedge Go's error types; winch and users key on them via x-kedge-error-type. */
export type KedgeErrorType =
  | "bad-request"
  | "no-route"
  | "no-backend"
  | "no-resolution-available"
  | "no-connection-to-all-resolved-addresses"
  | "backend-transport-closed"
  | "backend-timeout"
  | "adhoc-port-not-allowed"
  | "shutting-down"
  | "internal";

/** An error a client sees: made in one place, rendered in one place (headers or grpc-status). */
export class KedgeError extends Error {
  constructor(
    readonly type: KedgeErrorType,
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "KedgeError";
  }
}

export const noRoute = (what: string) => new KedgeError("no-route", 502, `unknown route to service: ${what}`);
