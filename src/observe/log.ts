/** JSON-lines logger on stderr. Fields never carry secrets: callers pass names, not tokens. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold = order.info;
/** Fields every line of this process carries: a worker's id, so the merged stderr tells workers apart. */
let processFields: Record<string, unknown> = {};

export function setLogProcessFields(fields: Record<string, unknown>): void {
  processFields = fields;
}

/** This process's own fields (a worker's id), for other line streams (the audit log) to carry too. */
export function logProcessFields(): Readonly<Record<string, unknown>> {
  return processFields;
}

export function setLogLevel(level: string): void {
  const normalised = (level === "warning" ? "warn" : level) as LogLevel;
  threshold = order[normalised] ?? order.info;
}

function emit(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
  if (order[level] < threshold) return;
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...processFields, ...fields })}\n`);
}

export const log = {
  debug: (msg: string, fields?: Record<string, unknown>) => emit("debug", msg, fields),
  info: (msg: string, fields?: Record<string, unknown>) => emit("info", msg, fields),
  warn: (msg: string, fields?: Record<string, unknown>) => emit("warn", msg, fields),
  error: (msg: string, fields?: Record<string, unknown>) => emit("error", msg, fields),
  get debugEnabled() {
    return threshold <= order.debug;
  },
};
