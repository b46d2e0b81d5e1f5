/**
 * Child: the Phaselock gateway with its real wiring, as `services/gateway/src/main.ts` builds it:
 * policy state over the database (Postgres or an embedded PGlite directory), the in-process change
 * feed and stores, the version poller, the undici upstream, and the batching audit writer (or, for
 * the audit-off comparison, a sink that discards).
 */
import { createServer } from "node:http";
import { type AuditSink, BatchAuditWriter } from "@phaselock/audit";
import { systemClock } from "@phaselock/core";
import { assertMigrated, createDb } from "@phaselock/db";
import {
  createApp,
  createHttpUpstream,
  createNodeHandler,
  startVersionPoller,
  wireGateway,
} from "@phaselock/gateway";
import { MemoryBus, MemoryRateLimiter, MemoryRecordQuota } from "@phaselock/state";
import { close, listen, runChild } from "../child.ts";

export interface GatewayConfig {
  databaseUrl?: string;
  dataDir?: string;
  upstreamUrl: string;
  issuer: string;
  phonebankSecret: string;
  ipHashKey: string;
  audit: boolean;
}

/** Discards every event: the audit-off side of the audit cost comparison. */
class NullAuditSink implements AuditSink {
  recorded = 0;
  record(): void {
    this.recorded++;
  }
  healthy(): boolean {
    return true;
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

runChild<GatewayConfig>(async (config) => {
  const clock = systemClock;
  const handle = createDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  await assertMigrated(handle.db);
  const bus = new MemoryBus();
  let auditErrors = 0;
  const audit: AuditSink & { pending?: number } = config.audit
    ? new BatchAuditWriter({ db: handle.db, clock, onError: () => void auditErrors++ })
    : new NullAuditSink();
  const upstream = createHttpUpstream({
    baseUrl: config.upstreamUrl,
    timeoutMs: 10_000,
    maxBodyBytes: 64 * 1024,
  });
  const gateway = wireGateway({
    db: handle.db,
    bus,
    clock,
    rateLimiter: new MemoryRateLimiter(),
    recordQuota: new MemoryRecordQuota(),
    audit,
    upstream,
    issuer: config.issuer,
    staleAfterMs: 5000,
    config: {
      upstreamSecret: config.phonebankSecret,
      secureCookies: false,
      maxBodyBytes: 64 * 1024,
      ipHashKey: config.ipHashKey,
      maxDevicesPerLink: 3,
    },
    ready: async () => {
      await handle.db.execute("select 1");
      return true;
    },
    onError: (err) => console.error(`bench gateway: policy state: ${(err as Error).message}`),
  });
  await gateway.start();
  const poller = startVersionPoller(gateway.state, handle.db);
  // As main.ts serves it: /pb/* on node:http directly, everything else through Hono.
  const server = createServer(createNodeHandler(gateway.deps, createApp(gateway.deps)));
  const port = await listen(server);

  return {
    port,
    stop: async () => {
      await close(server);
      poller.stop();
      gateway.stop();
      const pending = audit.pending;
      await audit.close();
      await upstream.close();
      await bus.close();
      await handle.close();
      return { auditPendingAtStop: pending ?? 0, auditErrors };
    },
  };
});
