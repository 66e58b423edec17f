import { getOption, toJson, type DescField, type DescMessage, type JsonObject, type MessageShape } from "@bufbuild/protobuf";
import { ConfigSchema, type Config } from "../gen/kedge/config/v1/config_pb.js";
import { secret } from "../gen/kedge/options/v1/secret_pb.js";
import { redactUrl, urlPassword } from "./scrub.js";

/** What a secret written in the config itself becomes in structured output; a secret file's path stays visible. */
export const redactedInline = "<redacted: inline>";

/**
 * Values shorter than this are not searched for in text: replacing every "ab" would garble the
 * message, and such a value protects nothing. Fields marked secret are never printed whatever
 * their length; this bound is for the search that backs that up.
 */
const minScrubbedLength = 4;

const privateKeyBegin = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/** A field marked `(kedge.options.v1.secret) = true` in proto/: its value is a credential. */
export function isSecretField(field: DescField): boolean {
  return getOption(field, secret);
}

/**
 * The config as protobuf JSON (proto field names) with every secret replaced: fields marked
 * secret, private keys pasted into any field, and passwords in URLs. Every structured output of
 * a config (/debug/config, AdminService GetConfig) goes through here.
 */
export function redactedJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): JsonObject {
  const json = toJson(schema, message, { useProtoFieldName: true }) as JsonObject;
  walkMessage(schema, json, (value, isSecret) => (isSecret ? redactedInline : redactInlineMaterial(value)));
  return json;
}

/**
 * The secret values in a config, as decoded protobuf JSON or as written by the user (proto or
 * JSON field names): what `scrubSecrets` must keep out of messages about that config.
 */
export function secretValues(schema: DescMessage, json: unknown): string[] {
  const found = new Set<string>();
  walkMessage(schema, json, (value, isSecret) => {
    const text = typeof value === "string" ? value : typeof value === "number" || typeof value === "boolean" ? String(value) : undefined;
    if (text === undefined) return value;
    if (isSecret) found.add(text);
    const password = urlPassword.exec(text)?.[0].replace(/^.*:/, "").slice(0, -1);
    if (password) found.add(password).add(safeDecode(password));
    return value;
  });
  for (const v of [...found]) found.add(JSON.stringify(v).slice(1, -1));
  return [...found].filter((v) => v.length >= minScrubbedLength).sort((a, b) => b.length - a.length);
}

/** The secret values of a decoded config, found by its schema's secret options. */
export function configSecrets(config: Config): string[] {
  return messageSecrets(ConfigSchema, config);
}

/** The config as the admin surfaces show it: protobuf JSON with every secret redacted. */
export function configToJson(config: Config): JsonObject {
  return redactedJson(ConfigSchema, config);
}

/** The secret values of a decoded config message. */
export function messageSecrets<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): string[] {
  return secretValues(schema, toJson(schema, message, { useProtoFieldName: true }));
}

/** A plain (not secret) string value as shown: whole if harmless, redacted if it holds a private key. */
function redactInlineMaterial(value: unknown): unknown {
  if (typeof value !== "string") return value;
  if (privateKeyBegin.test(value)) return redactedInline;
  return redactUrl(value);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

type Leaf = (value: unknown, isSecret: boolean) => unknown;

/** Calls `leaf` on every scalar in `json` (a message of `desc`) and stores what it returns. */
function walkMessage(desc: DescMessage, json: unknown, leaf: Leaf): void {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return;
  const obj = json as Record<string, unknown>;
  for (const field of desc.fields) {
    const key = field.name in obj ? field.name : field.jsonName in obj ? field.jsonName : undefined;
    if (key === undefined || obj[key] === null) continue;
    const isSecret = isSecretField(field);
    const value = obj[key];
    const item = (v: unknown): unknown => {
      if (field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message") || (field.fieldKind === "map" && field.mapKind === "message")) {
        walkMessage(field.message!, v, leaf);
        return v;
      }
      return typeof v === "object" && v !== null ? v : leaf(v, isSecret);
    };
    if (field.fieldKind === "list" && Array.isArray(value)) obj[key] = value.map(item);
    else if (field.fieldKind === "map" && typeof value === "object") {
      const map = value as Record<string, unknown>;
      for (const k of Object.keys(map)) map[k] = item(map[k]);
    } else obj[key] = item(value);
  }
}
