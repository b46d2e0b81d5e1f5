import {
  Counter,
  Gauge,
  Histogram,
  HotCounter,
  HotHistogram,
  LATENCY_BUCKETS,
  type Registry,
  STATUS_CLASSES,
  statusClassIndex,
} from "@phaselock/core";
import { REFUSALS, type RefusalCode } from "./refusals.ts";

/** What a request was, for the latency histogram's `route` label (a closed set: bounded series). */
export const ROUTE_KINDS = ["proxy", "landing", "redeem", "session", "metrics", "health", "other"] as const;
export type RouteKind = (typeof ROUTE_KINDS)[number];

/** Connection pool use of the upstream (undici's `Pool.stats`). */
export interface PoolUse {
  size: number;
  connected: number;
  free: number;
  pending: number;
  running: number;
}

/** What the gauges read at scrape time: nothing of this is computed per request. */
export interface GatewayMetricSources {
  /** seconds since the policy state was last confirmed current; null before the first load */
  feedAgeSeconds(): number | null;
  auditPending(): number;
  verifyCache(): { hits: number; misses: number; size: number };
  upstreamPool(): PoolUse | undefined;
}

/**
 * The gateway's counters, pre-bound to their label values when built so that counting a request
 * costs a property read and an increment: no label object, no string built per request.
 */
export interface GatewayMetrics {
  readonly registry: Registry;
  /** One access decision: `code` null when allowed (`{decision="allow",code="ok"}`). */
  decision(code: RefusalCode | null): void;
  /** A request answered: its route kind, status and duration. */
  request(kind: RouteKind, status: number, seconds: number): void;
  /** A policy change applied here, `seconds` after its commit in Postgres. */
  revocationLag(seconds: number): void;
  /** One audit batch committed. */
  auditCommit(seconds: number, events: number): void;
}

export const REFUSAL_CODES = Object.keys(REFUSALS) as RefusalCode[];

export function createGatewayMetrics(registry: Registry, sources: GatewayMetricSources): GatewayMetrics {
  // The two metrics counted on every request are hot-path ones: bound children, one addition.
  const decisions = new HotCounter(
    "phaselock_gateway_decisions_total",
    "Access decisions: allow (code ok) or deny with the refusal code",
    ["decision", "code"],
    registry,
  );
  const allowed = decisions.child("allow", "ok");
  const denied = Object.fromEntries(
    REFUSAL_CODES.map((code) => [code, decisions.child("deny", code)]),
  ) as Record<RefusalCode, { inc(): void }>;

  const duration = new HotHistogram(
    "phaselock_gateway_request_duration_seconds",
    "Time to answer a request (headers written), by route kind and status class",
    ["route", "status_class"],
    LATENCY_BUCKETS,
    registry,
  );
  const byKind = Object.fromEntries(
    ROUTE_KINDS.map((kind) => [kind, STATUS_CLASSES.map((cls) => duration.child(kind, cls))]),
  ) as Record<RouteKind, { observe(v: number): void }[]>;

  const lag = new Histogram({
    name: "phaselock_gateway_revocation_lag_seconds",
    help: "Time from a policy change's commit in Postgres to its application on this gateway",
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers: [registry],
  });

  new Gauge({
    name: "phaselock_gateway_feed_staleness_seconds",
    help: "Seconds since the policy state was last confirmed current (fails closed past STALE_AFTER_MS)",
    registers: [registry],
    collect() {
      const age = sources.feedAgeSeconds();
      this.set(age ?? Number.POSITIVE_INFINITY);
    },
  });
  new Gauge({
    name: "phaselock_gateway_audit_queue_depth",
    help: "Audit events recorded and not yet committed",
    registers: [registry],
    collect() {
      this.set(sources.auditPending());
    },
  });
  const commit = new Histogram({
    name: "phaselock_gateway_audit_commit_seconds",
    help: "Time to commit one batch of audit events into the hash chain",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const committed = new Counter({
    name: "phaselock_gateway_audit_events_committed_total",
    help: "Audit events committed",
    registers: [registry],
  });

  new Counter({
    name: "phaselock_gateway_verify_cache_hits_total",
    help: "Token verifications answered from the verify cache (signature check saved)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(sources.verifyCache().hits);
    },
  });
  new Counter({
    name: "phaselock_gateway_verify_cache_misses_total",
    help: "Token verifications that checked a signature",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(sources.verifyCache().misses);
    },
  });
  new Gauge({
    name: "phaselock_gateway_verify_cache_hit_ratio",
    help: "Share of verifications answered from the cache since start (use the counters for rates)",
    registers: [registry],
    collect() {
      const { hits, misses } = sources.verifyCache();
      this.set(hits + misses === 0 ? 0 : hits / (hits + misses));
    },
  });
  new Gauge({
    name: "phaselock_gateway_verify_cache_entries",
    help: "Verified tokens held in the cache",
    registers: [registry],
    collect() {
      this.set(sources.verifyCache().size);
    },
  });
  new Gauge({
    name: "phaselock_gateway_upstream_pool_connections",
    help: "Upstream connection pool: connections by state (size, connected, free, running) and queued requests (pending)",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      const pool = sources.upstreamPool();
      if (!pool) return;
      for (const state of ["size", "connected", "free", "pending", "running"] as const)
        this.labels(state).set(pool[state]);
    },
  });

  return {
    registry,
    decision(code) {
      if (code === null) allowed.inc();
      else denied[code].inc();
    },
    request(kind, status, seconds) {
      byKind[kind][statusClassIndex(status)]!.observe(seconds);
    },
    revocationLag: (seconds) => lag.observe(Math.max(0, seconds)),
    auditCommit(seconds, events) {
      commit.observe(seconds);
      committed.inc(events);
    },
  };
}

/** The route kind of a request target, for the latency histogram (never the path itself). */
export function routeKind(url: string, method: string): RouteKind {
  if (url.startsWith("/pb/_phaselock/")) return "session";
  if (url.startsWith("/pb")) return "proxy";
  if (url.startsWith("/l/")) return method === "POST" ? "redeem" : "landing";
  if (url === "/metrics" || url.startsWith("/metrics?")) return "metrics";
  if (url.startsWith("/healthz") || url.startsWith("/readyz")) return "health";
  return "other";
}
