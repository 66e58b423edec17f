import { fromJson, ScalarType, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { ConfigError } from "./error.js";
import { isSecretField } from "./secrets.js";

const durationPattern = /^-?\d+(\.\d{1,9})?s$/;
// google.protobuf.Duration's range, ±10,000 years; fromJson refuses more, without naming the field.
const durationMaxSeconds = 315_576_000_000;
const { DOUBLE, FLOAT, INT32, UINT32, SFIXED32, SINT32, FIXED32, UINT64, FIXED64, STRING, BOOL, BYTES } = ScalarType;
const int32Kinds = new Set<ScalarType>([INT32, UINT32, SFIXED32, SINT32, FIXED32]);
const unsignedKinds = new Set<ScalarType>([UINT32, FIXED32, UINT64, FIXED64]);
const floatKinds = new Set<ScalarType>([DOUBLE, FLOAT]);

/**
 * Decodes protobuf JSON into a message, first walking the schema so every problem is
 * reported with its field path (`http.routes[2].backend_name: …`). fromJson alone stops at
 * the first problem and names no path. Both proto names and lowerCamel JSON names are accepted.
 */
export function decodeMessage<Desc extends DescMessage>(schema: Desc, json: unknown, where: string): MessageShape<Desc> {
  const problems: string[] = [];
  checkMessage(schema, json, "", problems);
  if (problems.length > 0) throw new ConfigError(problems.map((p) => `${where}: ${p}`));
  try {
    return fromJson(schema, json as never);
  } catch (e) {
    throw new ConfigError([`${where}: ${(e as Error).message}`]);
  }
}

function join(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

function checkMessage(desc: DescMessage, value: unknown, path: string, problems: string[]): void {
  if (desc.typeName === "google.protobuf.Duration") {
    if (typeof value !== "string" || !durationPattern.test(value)) {
      problems.push(`${path}: expected a duration such as "1.5s", got ${JSON.stringify(value)}`);
    } else if (Math.abs(parseInt(value, 10)) > durationMaxSeconds) {
      problems.push(`${path}: ${value} is out of range (at most ${durationMaxSeconds}s)`);
    }
    return;
  }
  // Any JSON: a field such as server.workers takes a number or a word; its own check reads it.
  if (desc.typeName === "google.protobuf.Value") return;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push(`${path || "(top level)"}: expected an object, got ${describe(value)}`);
    return;
  }
  const seenOneof = new Map<string, string>();
  for (const [key, fieldValue] of Object.entries(value)) {
    const field = desc.fields.find((f) => f.name === key || f.jsonName === key);
    const fieldPath = join(path, field?.name ?? key);
    if (!field) {
      const known = desc.fields.map((f) => f.name).join(", ");
      problems.push(`${fieldPath}: unknown field (known fields: ${known})`);
      continue;
    }
    if (fieldValue === null) continue;
    if (field.oneof) {
      const other = seenOneof.get(field.oneof.name);
      if (other) problems.push(`${fieldPath}: only one of ${other} and ${field.name} may be set (${field.oneof.name})`);
      seenOneof.set(field.oneof.name, field.name);
    }
    checkField(field, fieldValue, fieldPath, problems);
  }
}

function checkField(field: DescField, value: unknown, path: string, problems: string[]): void {
  const secret = isSecretField(field);
  const shown = secret ? describeType : describe;
  switch (field.fieldKind) {
    case "scalar":
      return checkScalar(field.scalar, value, path, problems, secret);
    case "enum":
      return checkEnum(field.enum.values.map((v) => v.name), value, path, problems);
    case "message":
      return checkMessage(field.message, value, path, problems);
    case "list":
      if (!Array.isArray(value)) {
        problems.push(`${path}: expected a list, got ${shown(value)}`);
        return;
      }
      value.forEach((item, i) => {
        const itemPath = `${path}[${i}]`;
        if (field.listKind === "message") checkMessage(field.message, item, itemPath, problems);
        else if (field.listKind === "enum") checkEnum(field.enum.values.map((v) => v.name), item, itemPath, problems);
        else checkScalar(field.scalar, item, itemPath, problems, secret);
      });
      return;
    case "map":
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        problems.push(`${path}: expected an object of key/value pairs, got ${shown(value)}`);
        return;
      }
      for (const [k, v] of Object.entries(value)) {
        const itemPath = `${path}[${JSON.stringify(k)}]`;
        if (field.mapKind === "message") checkMessage(field.message, v, itemPath, problems);
        else if (field.mapKind === "enum") checkEnum(field.enum.values.map((e) => e.name), v, itemPath, problems);
        else checkScalar(field.scalar, v, itemPath, problems, secret);
      }
  }
}

function checkEnum(names: string[], value: unknown, path: string, problems: string[]): void {
  if (typeof value === "string" && names.includes(value)) return;
  if (typeof value === "number" && Number.isInteger(value) && value >= -0x80000000 && value <= 0x7fffffff) return;
  problems.push(`${path}: ${JSON.stringify(value)} is not one of ${names.join(", ")}`);
}

/** `secret`: the field holds a credential, so a wrong value is described by its type only. */
function checkScalar(kind: ScalarType, value: unknown, path: string, problems: string[], secret = false): void {
  if (kind === STRING) {
    if (typeof value !== "string") problems.push(`${path}: expected a string, got ${(secret ? describeType : describe)(value)}`);
    return;
  }
  if (kind === BOOL) {
    if (typeof value !== "boolean") problems.push(`${path}: expected true or false, got ${describe(value)}`);
    return;
  }
  if (kind === BYTES) {
    if (typeof value !== "string") problems.push(`${path}: expected base64 bytes, got ${describe(value)}`);
    return;
  }
  // As protobuf JSON: a number, or a string holding one with no surrounding space.
  const n = typeof value === "string" && value !== "" && value.trim() === value ? Number(value) : value;
  if (typeof n !== "number" || Number.isNaN(n)) {
    problems.push(`${path}: expected a number, got ${describe(value)}`);
    return;
  }
  if (floatKinds.has(kind)) return;
  if (!Number.isInteger(n)) problems.push(`${path}: expected a whole number, got ${n}`);
  else if (unsignedKinds.has(kind) && n < 0) problems.push(`${path}: must not be negative, got ${n}`);
  else if (int32Kinds.has(kind) && (n > (unsignedKinds.has(kind) ? 0xffffffff : 0x7fffffff) || n < -0x80000000)) {
    problems.push(`${path}: ${n} is out of range`);
  }
}

function describeType(value: unknown): string {
  return Array.isArray(value) ? "a list" : value === null ? "null" : typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return "a list";
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  return `${typeof value} ${JSON.stringify(value)}`;
}
