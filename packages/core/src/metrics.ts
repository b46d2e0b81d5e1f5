import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { safeEqual } from "./secrets.ts";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Request latency buckets, in seconds: a proxied answer is milliseconds, a batch issue seconds. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * One Prometheus registry per service instance (never prom-client's module-level default: tests
 * build many instances in one process). `process`: also Node's process metrics (main.ts only),
 * labelled `service` since every service exposes them under the same names. The services' own
 * metrics carry only the labels they name (the contract's
 * `phaselock_gateway_decisions_total{decision,code}`): their names already say which service, and
 * Prometheus adds the target's `job` and `instance`.
 */
export function createMetricsRegistry(service: string, opts: { process?: boolean } = {}): Registry {
  const registry = new Registry();
  if (opts.process) collectDefaultMetrics({ register: registry, prefix: "phaselock_", labels: { service } });
  return registry;
}

/** `status` as Prometheus' usual class label (`2xx`…): bounded cardinality. */
export const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;
export const statusClassIndex = (status: number): number =>
  Math.min(4, Math.max(0, Math.trunc(status / 100) - 1));
export const statusClass = (status: number): (typeof STATUS_CLASSES)[number] =>
  STATUS_CLASSES[statusClassIndex(status)]!;

/** The methods a `method` label names; any other (a client may send any token) is `other`. */
export const METHOD_LABELS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;
const METHOD_SET: ReadonlySet<string> = new Set(METHOD_LABELS);
export const methodLabel = (method: string): string => (METHOD_SET.has(method) ? method : "other");

/** `<prefix>_request_duration_seconds{method,route,status_class}` for a service's HTTP answers. */
export function requestDurationHistogram(registry: Registry, prefix: string) {
  return new Histogram({
    name: `${prefix}_request_duration_seconds`,
    help: "Time to answer an HTTP request (headers written), by route pattern and status class",
    labelNames: ["method", "route", "status_class"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
}

export interface MetricsAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The bearer credential of an `Authorization` value, or undefined. */
export function bearerOf(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
  return m?.[1];
}

/**
 * `GET /metrics` on any transport: Prometheus text, or when `token` (METRICS_TOKEN) is set and the
 * request's bearer is not it (compared in constant time), a `401` problem. Never cached.
 */
export async function metricsAnswer(
  registry: Registry,
  authorization: string | undefined,
  token: string | undefined,
  requestId: string,
): Promise<MetricsAnswer> {
  const base = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-request-id": requestId,
  };
  if (token !== undefined) {
    const presented = bearerOf(authorization);
    if (presented === undefined || !safeEqual(presented, token)) {
      return {
        status: 401,
        headers: {
          ...base,
          "content-type": "application/problem+json",
          "www-authenticate": 'Bearer realm="phaselock-metrics"',
        },
        body: JSON.stringify({
          type: "urn:phaselock:problem:unauthorized",
          title: "Authentication is required",
          status: 401,
          detail: "GET /metrics needs METRICS_TOKEN as a bearer credential.",
          code: "unauthorized",
          requestId,
        }),
      };
    }
  }
  return {
    status: 200,
    headers: { ...base, "content-type": registry.contentType },
    body: await registry.metrics(),
  };
}

type LabelValues = Record<string, string>;

/**
 * A counter for hot paths: each label set is a child bound once (`child(...)`) whose `inc()` is
 * one addition — prom-client's own children hash their labels on every call (~250 ns). Exposed
 * through the registry like any prom-client metric.
 */
export class HotCounter {
  readonly type = "counter";
  readonly #children: { labels: LabelValues; value: number }[] = [];
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  constructor(name: string, help: string, labelNames: readonly string[], registry: Registry) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    registry.registerMetric(this as never);
  }

  /** The child of one label set (values in `labelNames` order); starts at 0, so it is exposed. */
  child(...values: string[]): { inc(by?: number): void } {
    const slot = { labels: labelsOf(this.labelNames, values), value: 0 };
    this.#children.push(slot);
    return {
      inc: (by = 1) => {
        slot.value += by;
      },
    };
  }

  get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: "sum",
      values: this.#children.map((c) => ({ labels: c.labels, value: c.value })),
    };
  }

  reset(): void {
    for (const c of this.#children) c.value = 0;
  }
}

/**
 * A histogram for hot paths: a bound child's `observe()` finds its bucket by a short scan and adds
 * one; the cumulative Prometheus buckets are built only at scrape time.
 */
export class HotHistogram {
  readonly type = "histogram";
  readonly #children: { labels: LabelValues; counts: Float64Array; sum: number; count: number }[] = [];
  readonly buckets: readonly number[];
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
    registry: Registry,
  ) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    this.buckets = [...buckets].sort((a, b) => a - b);
    registry.registerMetric(this as never);
  }

  child(...values: string[]): { observe(v: number): void } {
    const slot = {
      labels: labelsOf(this.labelNames, values),
      counts: new Float64Array(this.buckets.length + 1),
      sum: 0,
      count: 0,
    };
    this.#children.push(slot);
    const { buckets } = this;
    const n = buckets.length;
    return {
      observe: (v: number) => {
        let i = 0;
        while (i < n && v > buckets[i]!) i++;
        slot.counts[i]!++;
        slot.sum += v;
        slot.count++;
      },
    };
  }

  get() {
    const values: { labels: LabelValues; value: number; metricName: string }[] = [];
    for (const c of this.#children) {
      let acc = 0;
      this.buckets.forEach((le, i) => {
        acc += c.counts[i]!;
        values.push({
          labels: { ...c.labels, le: String(le) },
          value: acc,
          metricName: `${this.name}_bucket`,
        });
      });
      values.push({ labels: { ...c.labels, le: "+Inf" }, value: c.count, metricName: `${this.name}_bucket` });
      values.push({ labels: c.labels, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: c.labels, value: c.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: "sum", values };
  }

  reset(): void {
    for (const c of this.#children) {
      c.counts.fill(0);
      c.sum = 0;
      c.count = 0;
    }
  }
}

function labelsOf(names: readonly string[], values: readonly string[]): LabelValues {
  if (names.length !== values.length) throw new Error(`expected ${names.length} label values`);
  return Object.fromEntries(names.map((n, i) => [n, values[i]!]));
}
