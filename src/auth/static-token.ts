import { createHash, timingSafeEqual } from "node:crypto";

/**
 * A static bearer token (kedge Go --unsafe_bearer_token_proxy_auth). Both sides are hashed first
 * so the comparison takes the same time whatever the length or content of the guess.
 */
export class StaticToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = createHash("sha256").update(token).digest();
  }

  matches(candidate: string): boolean {
    return timingSafeEqual(this.digest, createHash("sha256").update(candidate).digest());
  }
}
