import { serve } from "@hono/node-server";
import { BatchAuditWriter } from "@phaselock/audit";
import { DEV_PHONEBANK_SECRET, systemClock } from "@phaselock/core";
import { assertMigrated, createDb } from "@phaselock/db";
import {
  type ChangeBus,
  createRedisClient,
  MemoryBus,
  MemoryRateLimiter,
  MemoryRecordQuota,
  RedisBus,
  RedisRateLimiter,
  RedisRecordQuota,
} from "@phaselock/state";
import { createApp } from "./app.ts";
import { parseGatewayEnv } from "./env.ts";
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
const handle = createDb({ databaseUrl: env.DATABASE_URL, dataDir: env.DATA_DIR });
try {
  await assertMigrated(handle.db);
} catch (err) {
  console.error(`gateway: ${(err as Error).message}`);
  await handle.close();
  process.exit(1);
}

let bus: ChangeBus;
let stores: Pick<Parameters<typeof wireGateway>[0], "rateLimiter" | "recordQuota">;
let redis: ReturnType<typeof createRedisClient> | undefined;
if (env.REDIS_URL) {
  redis = createRedisClient(env.REDIS_URL);
  bus = new RedisBus({ url: env.REDIS_URL, onError: () => {} });
  stores = {
    rateLimiter: new RedisRateLimiter({ redis, prefix: "phaselock:rl:" }),
    recordQuota: new RedisRecordQuota({ redis, prefix: "phaselock:rq:" }),
  };
} else {
  bus = new MemoryBus();
  stores = { rateLimiter: new MemoryRateLimiter(), recordQuota: new MemoryRecordQuota() };
}

const audit = new BatchAuditWriter({ db: handle.db, clock });
const gateway = wireGateway({
  db: handle.db,
  bus,
  clock,
  ...stores,
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
  },
  ready: async () => {
    await handle.db.execute("select 1");
    if (redis) await redis.ping();
    return true;
  },
  onError: (err) => console.error(`gateway: policy state: ${(err as Error).message}`),
});
await gateway.start();
const poller = startVersionPoller(gateway.state, handle.db);

const server = serve(
  { fetch: createApp(gateway.deps).fetch, port: env.GATEWAY_PORT, hostname: env.HOST },
  (info) =>
    console.log(
      `gateway listening on http://${info.address}:${info.port} -> ${env.UPSTREAM_URL} (${env.REDIS_URL ? "Redis change feed" : "in-process store"})`,
    ),
);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`gateway: ${signal}, draining`);
  server.close();
  poller.stop();
  gateway.stop();
  await audit.close(); // graceful shutdown loses no audit event
  await bus.close();
  redis?.disconnect();
  await handle.close();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
