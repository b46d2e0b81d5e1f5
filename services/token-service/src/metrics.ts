import { latestCheckpoint } from "@phaselock/audit";
import {
  type Clock,
  Counter,
  Gauge,
  methodLabel,
  type Registry,
  requestDurationHistogram,
  statusClass,
} from "@phaselock/core";
import type { Db } from "@phaselock/db";

/** The token service's metrics behind `/metrics`. */
export interface TokenServiceMetrics {
  readonly registry: Registry;
  /** A request answered: its method, route pattern (never the path), status and duration. */
  request(method: string, route: string, status: number, seconds: number): void;
  /** Links issued (committed), single or batch. */
  issued(count: number): void;
}

export function createTokenServiceMetrics(
  registry: Registry,
  sources: { db: Db; clock: Clock; auditPending(): number },
): TokenServiceMetrics {
  const duration = requestDurationHistogram(registry, "phaselock_token_service");
  const issued = new Counter({
    name: "phaselock_token_service_links_issued_total",
    help: "Links issued (committed), single and batch",
    registers: [registry],
  });
  const checkpoint = () => latestCheckpoint(sources.db);
  new Gauge({
    name: "phaselock_token_service_audit_checkpoint_size",
    help: "Tree size (events covered) of the newest signed audit checkpoint",
    registers: [registry],
    async collect() {
      this.set((await checkpoint())?.treeSize ?? 0);
    },
  });
  new Gauge({
    name: "phaselock_token_service_audit_checkpoint_age_seconds",
    help: "Seconds since the newest signed audit checkpoint (checkpoints are signed every 10 s while the log grows)",
    registers: [registry],
    async collect() {
      const cp = await checkpoint();
      this.set(
        cp ? (sources.clock.now().getTime() - cp.createdAt.getTime()) / 1000 : Number.POSITIVE_INFINITY,
      );
    },
  });
  new Gauge({
    name: "phaselock_token_service_audit_queue_depth",
    help: "Audit events recorded and not yet committed",
    registers: [registry],
    collect() {
      this.set(sources.auditPending());
    },
  });
  return {
    registry,
    request(method, route, status, seconds) {
      duration.observe({ method: methodLabel(method), route, status_class: statusClass(status) }, seconds);
    },
    issued: (count) => issued.inc(count),
  };
}
