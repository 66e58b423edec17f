import { until } from "./wait.ts";

/** One access line as written, with its text (to check what it must not contain). */
export interface AccessLine {
  [field: string]: unknown;
  raw: string;
}

/**
 * Captures the access lines the in-process kedge or winch writes to stdout (other output passes
 * through) until `stop`.
 */
export function captureAccessLines() {
  let stdout = "";
  const originalWrite = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    if (text.includes('"msg":"access"')) {
      stdout += text;
      return true;
    }
    return (originalWrite as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;

  const lines = (): AccessLine[] => {
    const out: AccessLine[] = [];
    for (const raw of stdout.split("\n")) {
      if (!raw.startsWith("{")) continue;
      const line = JSON.parse(raw);
      if (line.msg === "access") out.push({ ...line, raw });
    }
    return out;
  };
  return {
    /** Everything captured, as written. */
    text: () => stdout,
    lines,
    /** The line of the request with this id, once it is written. */
    async lineFor(requestId: string): Promise<AccessLine> {
      let found: AccessLine | undefined;
      await until(`the access line of ${requestId}`, () => (found = lines().find((l) => l.request_id === requestId)) !== undefined);
      return found!;
    },
    /** Lines written for this request id so far. */
    linesOf: (requestId: string) => lines().filter((l) => l.request_id === requestId),
    stop: () => void (process.stdout.write = originalWrite as typeof process.stdout.write),
  };
}
