import type { HistogramFamily, MetricFamily, ValueFamily } from "./metric-families.js";

/** One process's families and the `worker` label value its own series get ("1", "2", …, "supervisor"). */
export interface ProcessFamilies {
  readonly worker: string;
  readonly families: readonly MetricFamily[];
}

const sameNames = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((n, i) => n === b[i]);

type Histo = [values: readonly string[], counts: number[], sum: number, count: number];

/**
 * The families of several processes as one process's, by each family's merge rule: `sum` adds the
 * series of equal label sets (histograms bucket by bucket), `max` keeps their highest value,
 * `worker` keeps each process's series apart under a `worker` label. A family is shaped by the
 * first process that has it; another process's family of the same name with another type, label
 * names or buckets (a worker of an older binary) is left out rather than mixed in.
 */
export function mergeFamilies(sources: readonly ProcessFamilies[]): MetricFamily[] {
  const merged = new Map<string, { family: MetricFamily; values: Map<string, [readonly string[], number]>; histos: Map<string, Histo>; byWorker: Array<readonly [readonly string[], number]> }>();
  for (const { worker, families } of sources) {
    for (const f of families) {
      let m = merged.get(f.name);
      if (m === undefined) merged.set(f.name, (m = { family: f, values: new Map(), histos: new Map(), byWorker: [] }));
      const shape = m.family;
      if (f.type !== shape.type || f.merge !== shape.merge || !sameNames(f.labelNames, shape.labelNames)) continue;
      if (f.type === "histogram") {
        if (!sameNames(f.buckets.map(String), (shape as HistogramFamily).buckets.map(String))) continue;
        for (const [values, counts, sum, count] of f.series) {
          const key = JSON.stringify(values);
          const h = m.histos.get(key);
          if (h === undefined) m.histos.set(key, [values, counts.slice(), sum, count]);
          else {
            for (let i = 0; i < counts.length; i++) h[1][i] += counts[i];
            h[2] += sum;
            h[3] += count;
          }
        }
      } else if (f.merge === "worker") {
        for (const [values, v] of f.series) m.byWorker.push([[...values, worker], v]);
      } else {
        for (const [values, v] of f.series) {
          const key = JSON.stringify(values);
          const s = m.values.get(key);
          if (s === undefined) m.values.set(key, [values, v]);
          else s[1] = f.merge === "max" ? Math.max(s[1], v) : s[1] + v;
        }
      }
    }
  }
  const out: MetricFamily[] = [];
  for (const { family, values, histos, byWorker } of merged.values()) {
    if (family.type === "histogram") out.push({ ...family, series: [...histos.values()] });
    else if (family.merge === "worker") out.push({ ...family, labelNames: [...family.labelNames, "worker"], series: byWorker } satisfies ValueFamily);
    else out.push({ ...family, series: [...values.values()] });
  }
  return out;
}
