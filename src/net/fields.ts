/**
 * A header field's value: text[start..end) without the optional whitespace around it (SP and HTAB,
 * RFC 9110 §5.6.3). One substring, where slice().trim() makes two.
 */
export function fieldValue(text: string, start: number, end: number): string {
  let c = text.charCodeAt(start);
  while (start < end && (c === 32 || c === 9)) c = text.charCodeAt(++start);
  c = text.charCodeAt(end - 1);
  while (end > start && (c === 32 || c === 9)) c = text.charCodeAt(--end - 1);
  return text.slice(start, end);
}

/** Field names as peers spell them → lower case. Clients and backends send the same few names again and again. */
const lowerNames = new Map<string, string>();
const maxCachedNames = 1000;

export function lowerFieldName(name: string): string {
  let lower = lowerNames.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (lowerNames.size < maxCachedNames) lowerNames.set(name, lower);
  }
  return lower;
}
