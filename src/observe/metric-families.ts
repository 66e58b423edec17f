/**
 * A registry's state as plain JSON-able values, and the one Prometheus text renderer of it. A
 * single process renders its own families; a supervisor renders the merge of its workers'
 * (metrics-merge.ts), so both expositions come out of the same code.
 */

/**
 * How a family's series from several processes make one: `sum` adds values label set by label set
 * (counters, histograms bucket by bucket, gauges that count things: connections, streams in
 * flight); `worker` keeps each process's series apart under a `worker` label (gauges a sum would
 * make meaningless: the config version, memory of one process, start time); `max` keeps the
 * highest value of any process per label set (a state where the worst one matters: the failover
 * tier any worker sends to).
 */
export type MergeRule = "sum" | "worker" | "max";

export interface ValueFamily {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge";
  readonly merge: MergeRule;
  readonly labelNames: readonly string[];
  readonly series: ReadonlyArray<readonly [labelValues: readonly string[], value: number]>;
}

export interface HistogramFamily {
  readonly name: string;
  readonly help: string;
  readonly type: "histogram";
  readonly merge: "sum";
  readonly labelNames: readonly string[];
  /** Upper bounds, ascending, without +Inf. */
  readonly buckets: readonly number[];
  /** counts[i]: observations ≤ buckets[i] (cumulative, as exposed); count is the +Inf bucket. */
  readonly series: ReadonlyArray<readonly [labelValues: readonly string[], counts: readonly number[], sum: number, count: number]>;
}

export type MetricFamily = ValueFamily | HistogramFamily;

const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/** `a="x",b="y"`: the inside of a series' braces. */
export function renderLabels(names: readonly string[], values: readonly string[]): string {
  let out = "";
  for (let i = 0; i < names.length; i++) out += `${i ? "," : ""}${names[i]}="${escape(values[i] ?? "")}"`;
  return out;
}

function renderFamily(f: MetricFamily): string {
  let out = `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
  if (f.type === "histogram") {
    for (const [values, counts, sum, count] of f.series) {
      const key = renderLabels(f.labelNames, values);
      const sep = key ? "," : "";
      for (let i = 0; i < f.buckets.length; i++) out += `${f.name}_bucket{${key}${sep}le="${f.buckets[i]}"} ${counts[i]}\n`;
      out += `${f.name}_bucket{${key}${sep}le="+Inf"} ${count}\n`;
      out += `${f.name}_sum${key ? `{${key}}` : ""} ${sum}\n${f.name}_count${key ? `{${key}}` : ""} ${count}\n`;
    }
    return out;
  }
  for (const [values, v] of f.series) {
    const key = renderLabels(f.labelNames, values);
    out += `${f.name}${key ? `{${key}}` : ""} ${v}\n`;
  }
  return out;
}

/** The text exposition format (version 0.0.4) of `families`, in their order. */
export function renderFamilies(families: readonly MetricFamily[]): string {
  let out = "";
  for (const f of families) out += renderFamily(f);
  return out;
}
