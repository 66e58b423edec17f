
/**
 * A static bearer token (kedge Go --unsafe_bearer_token_proxy_auth). Both sides are hashed first
 * so the comparison takes the same time whatever the length or content of the guess.
 */
export class StaticToken {
  private readonly digest: Buffer;

  // Bun's own hasher and its crypto global, not node:crypto, whose module set-up every process would pay.
  constructor(token: string) {
    this.digest = sha256(token);
  }

  matches(candidate: string): boolean {
    return crypto.timingSafeEqual(this.digest, sha256(candidate));
  }
}

function sha256(text: string): Buffer {
  return new Bun.CryptoHasher("sha256").update(text).digest();
}
