import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { safeEqual } from "./secrets.ts";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Request latency buckets, in seconds: a proxied answer is milliseconds, a batch issue seconds. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * One Prometheus registry per service instance (never prom-client's module-level default: tests
 * build many instances in one process). `process`: also Node's process metrics (main.ts only).
 */
export function createMetricsRegistry(service: string, opts: { process?: boolean } = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (opts.process) collectDefaultMetrics({ register: registry, prefix: "phaselock_" });
  return registry;
}

/** `status` as Prometheus' usual class label (`2xx`…): bounded cardinality. */
export const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;
export const statusClassIndex = (status: number): number =>
  Math.min(4, Math.max(0, Math.trunc(status / 100) - 1));
export const statusClass = (status: number): (typeof STATUS_CLASSES)[number] =>
  STATUS_CLASSES[statusClassIndex(status)]!;

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
