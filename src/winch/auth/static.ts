import type { AuthSource, Credential } from "./source.js";

/** A credential fixed by config: `token` (Bearer) and `dummy` (the header value verbatim). */
export function staticSource(name: string, credential: Credential): AuthSource {
  const ready = Promise.resolve(credential);
  return { name, credential: () => ready, close() {} };
}

export const bearerSource = (name: string, token: string): AuthSource => staticSource(name, { header: `Bearer ${token}` });
