import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { BatchAuditWriter } from "@phaselock/audit";
import { DEV_PHONEBANK_SECRET, resolveDataDir, systemClock } from "@phaselock/core";
import { assertMigrated, createDb } from "@phaselock/db";
import { createStores } from "@phaselock/state";
import { createApp } from "./app.ts";
import { parseGatewayEnv } from "./env.ts";
import { createNodeHandler } from "./node-handler.ts";
import { createHttpUpstream } from "./upstream.ts";
import { startVersionPoller, wireGateway } from "./wiring.ts";

const env = parseGatewayEnv(process.env);
const production = env.NODE_ENV === "production";
if (production && (!env.PHONEBANK_SECRET || !env.AUDIT_IP_KEY)) {
  console.error("gateway: PHONEBANK_SECRET and AUDIT_IP_KEY are required when NODE_ENV=production");
  process.exit(1);
}
if (!env.DATABASE_URL) {
  console.warn(`gateway: no DATABASE_URL, using the embedded database in ${env.DATA_DIR} (one process only)`);
}

const clock = systemClock;
const handle = createDb({
  databaseUrl: env.DATABASE_URL,
  dataDir: env.DATABASE_URL ? undefined : resolveDataDir(env.DATA_DIR, process.env.INIT_CWD),
});
try {
  await assertMigrated(handle.db);
} catch (err) {
  console.error(`gateway: ${(err as Error).message}`);
  await handle.close();
  process.exit(1);
}

const stores = createStores({
  redisUrl: env.REDIS_URL,
  onError: (err) => console.error(`gateway: redis: ${(err as Error).message}`),
});
const audit = new BatchAuditWriter({ db: handle.db, clock });
const gateway = wireGateway({
  db: handle.db,
  bus: stores.bus,
  clock,
  rateLimiter: stores.rateLimiter,
  recordQuota: stores.recordQuota,
  audit,
  upstream: createHttpUpstream({
    baseUrl: env.UPSTREAM_URL,
    timeoutMs: env.UPSTREAM_TIMEOUT_MS,
    maxBodyBytes: env.MAX_BODY_BYTES,
  }),
  issuer: env.TOKEN_SERVICE_URL,
  staleAfterMs: env.STALE_AFTER_MS,
  config: {
    upstreamSecret: env.PHONEBANK_SECRET ?? DEV_PHONEBANK_SECRET,
    secureCookies: env.SECURE_COOKIES,
    maxBodyBytes: env.MAX_BODY_BYTES,
    ipHashKey: env.AUDIT_IP_KEY ?? "phaselock-dev-ip-key",
    maxDevicesPerLink: env.MAX_DEVICES_PER_LINK,
    sessionTtlSeconds: env.SESSION_TTL_SECONDS,
    publicGatewayUrl: env.PUBLIC_GATEWAY_URL,
  },
  ready: async () => {
    await handle.db.execute("select 1");
    await stores.ping();
    return true;
  },
  onError: (err) => console.error(`gateway: policy state: ${(err as Error).message}`),
});
await gateway.start();
const poller = startVersionPoller(gateway.state, handle.db);

// /pb/* is answered on node:http directly (the proxy's fast path); every other route by Hono.
const server = createServer(createNodeHandler(gateway.deps, createApp(gateway.deps)));
server.listen(env.GATEWAY_PORT, env.HOST, () => {
  const info = server.address() as AddressInfo;
  console.log(
    `gateway listening on http://${info.address}:${info.port} -> ${env.UPSTREAM_URL} (${env.REDIS_URL ? "Redis change feed" : "in-process store"})`,
  );
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`gateway: ${signal}, draining`);
  server.close();
  poller.stop();
  await gateway.stop();
  await audit.close(); // graceful shutdown loses no audit event
  await stores.close();
  await handle.close();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
