/**
 * A string equal for two config messages exactly when their contents are equal: what
 * toJsonString(schema, message) gave for comparisons, without the message's schema, whose
 * descriptors a worker process never loads. Object keys are sorted, since a message's fields are
 * set in the order its JSON listed them; bigint and bytes fields get a form JSON can hold. Run at
 * config build time only, never per request.
 */
export function messageKey(message: unknown): string {
  return JSON.stringify(message, keyed) ?? "";
}

function keyed(_name: string, value: unknown): unknown {
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof Uint8Array) return Array.from(value);
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const sorted: Record<string, unknown> = {};
  for (const name of Object.keys(value).sort()) sorted[name] = (value as Record<string, unknown>)[name];
  return sorted;
}
