/** A credential an auth source cannot give now; the message names the source and what to fix, never a secret. */
export class AuthSourceError extends Error {
  constructor(
    readonly source: string,
    message: string,
  ) {
    super(`auth source "${source}": ${message}`);
    this.name = "AuthSourceError";
  }
}

/** The message of anything thrown, for wrapping into an AuthSourceError. */
export const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));
