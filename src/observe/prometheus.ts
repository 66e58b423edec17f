/**
 * A small Prometheus registry: counters and histograms keyed by label values, rendered in the
 * text exposition format.
 */
type Labels = Record<string, string>;

const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

function renderLabels(names: readonly string[], values: readonly string[]): string {
  return names.map((n, i) => `${n}="${escape(values[i])}"`).join(",");
}

/**
 * A metric's series by label values, found by walking one Map per label name: the hot path
 * builds no string per lookup. Values beyond the metric's label names are ignored.
 */
class SeriesIndex<T> {
  private root = new Map<string, unknown>();
  private list: Array<[labels: string, series: T]> = [];
  /**
   * The label values of the last get() and their series: request after request counts into the
   * same series (one backend, status 200), and comparing the values is cheaper than a Map lookup
   * per label (bench/README.md).
   */
  private lastValues: string[] = [];
  private lastSeries: T | undefined;

  constructor(
    private readonly names: readonly string[],
    private readonly make: () => T,
  ) {}

  get(values: readonly string[]): T {
    const last = this.lastValues;
    if (this.lastSeries !== undefined) {
      let same = true;
      for (let i = 0; i < this.names.length; i++) {
        if (values[i] !== last[i]) {
          same = false;
          break;
        }
      }
      if (same) return this.lastSeries;
    }
    const series = this.walk(values, true)!;
    this.lastValues = values.slice(0, this.names.length);
    this.lastSeries = series;
    return series;
  }

  find(values: readonly string[]): T | undefined {
    return this.walk(values, false);
  }

  /** Rendered label sets and their series, in creation order. */
  entries(): ReadonlyArray<[string, T]> {
    return this.list;
  }

  clear(): void {
    this.root = new Map();
    this.list = [];
    this.lastSeries = undefined;
  }

  private walk(values: readonly string[], create: boolean): T | undefined {
    const last = this.names.length - 1;
    let map = this.root;
    for (let i = 0; i < last; i++) {
      let next = map.get(values[i]) as Map<string, unknown> | undefined;
      if (next === undefined) {
        if (!create) return undefined;
        next = new Map();
        map.set(values[i], next);
      }
      map = next;
    }
    const leafKey = last >= 0 ? values[last] : "";
    let series = map.get(leafKey) as T | undefined;
    if (series === undefined && create) {
      series = this.make();
      map.set(leafKey, series);
      this.list.push([renderLabels(this.names, values), series]);
    }
    return series;
  }
}

export interface Metric {
  render(): string;
}

/** Label values and a value, as a collect callback reports them at scrape time. */
export type Sample = [labelValues: readonly string[], value: number];

interface Value {
  v: number;
}

function renderValues(name: string, series: ReadonlyArray<[string, Value]>): string {
  let out = "";
  for (const [key, s] of series) out += `${name}${key ? `{${key}}` : ""} ${s.v}\n`;
  return out;
}

export class Counter implements Metric {
  private readonly series: SeriesIndex<Value>;
  /** `collect`: the values are read at scrape time (process CPU, counts kept elsewhere) instead of inc(). */
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], public collect?: () => Iterable<Sample>) {
    this.series = new SeriesIndex(labelNames, () => ({ v: 0 }));
  }
  inc(labelValues: readonly string[], by = 1): void {
    this.series.get(labelValues).v += by;
  }
  get(labels: Labels): number {
    return this.series.find(this.labelNames.map((n) => labels[n]))?.v ?? 0;
  }
  render(): string {
    if (this.collect) {
      this.series.clear();
      for (const [labels, v] of this.collect()) this.series.get(labels).v = v;
    }
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n${renderValues(this.name, this.series.entries())}`;
  }
}

export class Gauge implements Metric {
  private readonly series: SeriesIndex<Value>;
  /** `collect` reads the values at scrape time; it may be set once what it reads exists (listeners, backends). */
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], public collect?: () => Iterable<Sample>) {
    this.series = new SeriesIndex(labelNames, () => ({ v: 0 }));
  }
  set(labelValues: readonly string[], v: number): void {
    this.series.get(labelValues).v = v;
  }
  render(): string {
    if (this.collect) {
      this.series.clear();
      for (const [labels, v] of this.collect()) this.set(labels, v);
    }
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge\n${renderValues(this.name, this.series.entries())}`;
  }
}

interface Buckets {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram implements Metric {
  private readonly series: SeriesIndex<Buckets>;
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], readonly buckets: readonly number[]) {
    this.series = new SeriesIndex(labelNames, () => ({ counts: new Array(buckets.length).fill(0), sum: 0, count: 0 }));
  }
  observe(labelValues: readonly string[], value: number): void {
    const s = this.series.get(labelValues);
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const [key, s] of this.series.entries()) {
      const sep = key ? "," : "";
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket{${key}${sep}le="${b}"} ${s.counts[i]}\n`;
      });
      out += `${this.name}_bucket{${key}${sep}le="+Inf"} ${s.count}\n`;
      out += `${this.name}_sum${key ? `{${key}}` : ""} ${s.sum}\n${this.name}_count${key ? `{${key}}` : ""} ${s.count}\n`;
    }
    return out;
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];
  add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  render(): string {
    return this.metrics.map((m) => m.render()).join("");
  }
}
