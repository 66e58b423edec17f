import { parseDocument } from "yaml";
import { ConfigError } from "./error.js";

/**
 * Parses JSON or YAML text. JSON is parsed with YAML's JSON schema, so both report
 * "line L, column C" (JSON.parse under Bun reports no position).
 */
export function parseConfigText(text: string, fileName: string): unknown {
  const json = fileName.endsWith(".json") || /^\s*[{[]/.test(text);
  const doc = parseDocument(text, { schema: json ? "json" : "core", uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.slice(0, 3).map((e) => {
        const pos = e.linePos?.[0];
        const where = pos ? `line ${pos.line}, column ${pos.col}` : "somewhere";
        return `${fileName}: ${where}: invalid ${json ? "JSON" : "YAML"}: ${e.message.split(" at line")[0]}`;
      }),
    );
  }
  try {
    return doc.toJS() ?? {};
  } catch (e) {
    // yaml throws, rather than reports, an alias to no anchor and an alias-expansion bomb.
    throw new ConfigError([`${fileName}: somewhere: invalid ${json ? "JSON" : "YAML"}: ${(e as Error).message}`]);
  }
}
