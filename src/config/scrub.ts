// Secrets kept out of text, without the config's schema: a worker process, which loads none,
// scrubs its problems with the secret values its supervisor sent (config/secrets.ts finds them).

/** What a secret becomes in text (errors, logs). */
export const redacted = "<redacted>";

// Up to the END line, or, when a value was cut short, the end of the quoted string or of the text.
const privateKeyBlock = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|(?=")|$)/g;
export const urlPassword = /^([a-z][a-z0-9+.-]*:\/\/[^/?#@:]*):[^/?#@]*@/i;

/** Text (a config problem, a log line) with each of the secrets and any private key block replaced. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text.replace(privateKeyBlock, redacted);
  for (const s of secrets) out = out.replaceAll(s, redacted);
  return out;
}

/** A URL for logs: its password, if any, replaced. */
export function redactUrl(url: string): string {
  return url.replace(urlPassword, `$1:${redacted}@`);
}
