import type { Value } from "@bufbuild/protobuf/wkt";
import type { Config } from "../gen/kedge/config/v1/config_pb.js";

export type WorkersSetting = number | "auto";

const problem = 'must be "auto" or a whole number of at least 1';

/** server.workers as set: absent and "auto" are "auto"; otherwise the number it names. */
function read(value: Value | undefined): WorkersSetting | string {
  const kind = value?.kind;
  if (!kind || kind.case === undefined || kind.case === "nullValue") return "auto";
  if (kind.case === "stringValue") {
    if (kind.value === "auto") return "auto";
    const n = /^\d+$/.test(kind.value) ? Number(kind.value) : NaN;
    return n >= 1 ? n : `${problem}, got ${JSON.stringify(kind.value)}`;
  }
  if (kind.case === "numberValue" && Number.isInteger(kind.value) && kind.value >= 1) return kind.value;
  return `${problem}, got ${kind.case === "numberValue" ? kind.value : kind.case.replace(/Value$/, "")}`;
}

/** The problem with server.workers, if any, as "server.workers: …". */
export function validateWorkers(config: Config): string[] {
  const setting = read(config.server?.workers);
  return typeof setting === "string" && setting !== "auto" ? [`server.workers: ${setting}`] : [];
}

/** server.workers of a validated config. */
export function workersSetting(config: Config): WorkersSetting {
  const setting = read(config.server?.workers);
  return typeof setting === "number" ? setting : "auto";
}
