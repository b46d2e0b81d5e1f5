/**
 * Child: the Phaselock gateway with its real wiring, as `services/gateway/src/main.ts` builds it:
 * policy state over the database (Postgres or an embedded PGlite directory), the change feed and
 * the limit stores in Redis (production shape) or in process, the version poller, the undici
 * upstream, and the batching audit writer (or, for the audit-off comparison, a sink that discards).
 */
import { createServer } from "node:http";
import { type AuditSink, BatchAuditWriter } from "@phaselock/audit";
import { systemClock } from "@phaselock/core";
import { assertMigrated, createDb } from "@phaselock/db";
import { createGateway, parseGatewayEnv } from "@phaselock/gateway";
import { createStores } from "@phaselock/state";
import { close, listen, runChild } from "../child.ts";

export interface GatewayConfig {
  databaseUrl?: string;
  dataDir?: string;
  upstreamUrl: string;
  issuer: string;
  phonebankSecret: string;
  ipHashKey: string;
  audit: boolean;
  /**
   * false: the audit writer reads the chain head under the lock for every batch (four round
   * trips), as before 2026-12-01, for the before/after row (j). Default: as main.ts runs it.
   */
  auditRememberHead?: boolean;
  /** production shape: rate limits, record quota and change feed in Redis; else in process */
  redisUrl?: string;
  /** e.g. `pl:bench:abc:` */
  redisPrefix?: string;
  /** true: the limits through a LeasedMeter (createStores' `leasedLimits`), for row (k) */
  leasedLimits?: boolean;
}

/** Discards every event: the audit-off side of the audit cost comparison. */
class NullAuditSink implements AuditSink {
  recorded = 0;
  record(): void {
    this.recorded++;
  }
  async recordDurable(): Promise<void> {
    this.recorded++;
  }
  healthy(): boolean {
    return true;
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

runChild<GatewayConfig>(async (bench) => {
  const handle = createDb({ databaseUrl: bench.databaseUrl, dataDir: bench.dataDir });
  await assertMigrated(handle.db);
  const stores = createStores({
    redisUrl: bench.redisUrl,
    prefix: bench.redisPrefix,
    leasedLimits: bench.leasedLimits === true,
    onError: (err) => console.error(`bench gateway: redis: ${(err as Error).message}`),
  });
  const config = parseGatewayEnv({
    UPSTREAM_URL: bench.upstreamUrl,
    TOKEN_SERVICE_URL: bench.issuer,
    PHONEBANK_SECRET: bench.phonebankSecret,
    AUDIT_IP_KEY: bench.ipHashKey,
    // All 32 connections carry one volunteer's session: the per-link in-flight cap (8) would
    // refuse most of them, which is the point of the cap but not of this benchmark.
    MAX_CONCURRENT_PER_LINK: "64",
  });
  let auditErrors = 0;
  const gateway = createGateway(config, {
    db: handle.db,
    stores,
    clock: systemClock,
    // Without an audit sink the builder brings its own batching writer, as main.ts runs it.
    audit: !bench.audit
      ? new NullAuditSink()
      : bench.auditRememberHead === false
        ? new BatchAuditWriter({
            db: handle.db,
            clock: systemClock,
            rememberHead: false,
            onError: (err) => console.error(`bench gateway: ${(err as Error).message}`),
          })
        : undefined,
    onError: (err) => {
      auditErrors++;
      console.error(`bench gateway: ${(err as Error).message}`);
    },
  });
  await gateway.start();
  const server = createServer(gateway.handler);
  const port = await listen(server);

  return {
    port,
    stop: async () => {
      await close(server);
      const pending = (gateway.audit as { pending?: number }).pending;
      await gateway.stop();
      await stores.close();
      await handle.close();
      return { auditPendingAtStop: pending ?? 0, auditErrors };
    },
  };
});
