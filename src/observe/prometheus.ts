/**
 * A small Prometheus registry: counters, gauges and histograms keyed by label values, read out as
 * metric families (metric-families.ts) and rendered in the text exposition format.
 */
import { renderFamilies, type HistogramFamily, type MergeRule, type MetricFamily, type ValueFamily } from "./metric-families.js";

type Labels = Record<string, string>;

/**
 * A metric's series by label values, found by walking one Map per label name: the hot path
 * builds no string per lookup. Values beyond the metric's label names are ignored.
 */
class SeriesIndex<T> {
  private root = new Map<string, unknown>();
  private list: Array<[labelValues: readonly string[], series: T]> = [];
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

  /** Label values and their series, in creation order. */
  entries(): ReadonlyArray<[readonly string[], T]> {
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
      this.list.push([values.slice(0, this.names.length), series]);
    }
    return series;
  }
}

export interface Metric {
  /** The families this metric shows now (collect callbacks run here); empty ones are left out by some. */
  families(): MetricFamily[];
}

/** Label values and a value, as a collect callback reports them at scrape time. */
export type Sample = [labelValues: readonly string[], value: number];

interface Value {
  v: number;
}

function valueSeries(entries: ReadonlyArray<[readonly string[], Value]>): Array<[readonly string[], number]> {
  return entries.map(([values, s]) => [values, s.v]);
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
  families(): ValueFamily[] {
    if (this.collect) {
      this.series.clear();
      for (const [labels, v] of this.collect()) this.series.get(labels).v = v;
    }
    return [{ name: this.name, help: this.help, type: "counter", merge: "sum", labelNames: this.labelNames, series: valueSeries(this.series.entries()) }];
  }
  render(): string {
    return renderFamilies(this.families());
  }
}

export class Gauge implements Metric {
  private readonly series: SeriesIndex<Value>;
  /**
   * `collect` reads the values at scrape time; it may be set once what it reads exists (listeners,
   * backends). `merge`: how workers' values make the process's (metric-families.ts); a gauge that
   * counts things sums.
   */
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], public collect?: () => Iterable<Sample>, readonly merge: MergeRule = "sum") {
    this.series = new SeriesIndex(labelNames, () => ({ v: 0 }));
  }
  set(labelValues: readonly string[], v: number): void {
    this.series.get(labelValues).v = v;
  }
  families(): ValueFamily[] {
    if (this.collect) {
      this.series.clear();
      for (const [labels, v] of this.collect()) this.set(labels, v);
    }
    return [{ name: this.name, help: this.help, type: "gauge", merge: this.merge, labelNames: this.labelNames, series: valueSeries(this.series.entries()) }];
  }
  render(): string {
    return renderFamilies(this.families());
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
  families(): HistogramFamily[] {
    const series = this.series.entries().map(([values, s]) => [values, s.counts.slice(), s.sum, s.count] as const);
    return [{ name: this.name, help: this.help, type: "histogram", merge: "sum", labelNames: this.labelNames, buckets: this.buckets, series }];
  }
  render(): string {
    return renderFamilies(this.families());
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];
  add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  /** Every metric's families, in registration order: what a worker hands its supervisor. */
  families(): MetricFamily[] {
    return this.metrics.flatMap((m) => m.families());
  }
  render(): string {
    return renderFamilies(this.families());
  }
}
