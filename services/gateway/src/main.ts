import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import {
  acquireDataDirLock,
  announce,
  createLogger,
  createMetricsRegistry,
  DataDirLockedError,
  DEV_PHONEBANK_SECRET,
  errorText,
  installShutdown,
  lockedAdvice,
  resolveDataDir,
  systemClock,
} from "@phaselock/core";
import { assertMigrated, openDb, stallWatchFor } from "@phaselock/db";
import { createStores } from "@phaselock/state";
import { parseGatewayEnv } from "./env.ts";
import { createGateway } from "./service.ts";

let config: ReturnType<typeof parseGatewayEnv>;
try {
  config = parseGatewayEnv(process.env);
} catch (err) {
  console.error(`gateway: ${(err as Error).message}`);
  process.exit(1);
}
if (!config.databaseUrl) {
  console.warn(
    `gateway: no DATABASE_URL, using the embedded database in ${config.dataDir} (one process only)`,
  );
}

const dataDir = config.databaseUrl ? undefined : resolveDataDir(config.dataDir, process.env.INIT_CWD);
let lock: ReturnType<typeof acquireDataDirLock> | undefined;
let handle: Awaited<ReturnType<typeof openDb>>;
try {
  // The embedded database belongs to one process: taken before anything opens it.
  if (dataDir !== undefined) lock = acquireDataDirLock(dataDir, { command: "pnpm start:gateway" });
  handle = await openDb({
    databaseUrl: config.databaseUrl,
    dataDir,
    stallWatch: stallWatchFor(config.dbStallTimeoutMs),
  });
} catch (err) {
  const advice = err instanceof DataDirLockedError ? `. ${lockedAdvice(err.holder)}` : "";
  console.error(`gateway: ${(err as Error).message}${advice}`);
  process.exit(1);
}
try {
  await assertMigrated(handle.db);
} catch (err) {
  console.error(`gateway: ${(err as Error).message}`);
  await handle.close();
  process.exit(1);
}

if (config.databaseUrl && !config.redisUrl) {
  // A shared Postgres is how several gateways run; without Redis each would meter on its own.
  console.warn(
    "gateway: no REDIS_URL, so rate limits and record quotas are this process's own: every further gateway on this database multiplies them; set REDIS_URL to run more than one",
  );
}

const logger = createLogger({ service: "gateway", level: config.logLevel });
const stores = createStores({
  redisUrl: config.redisUrl,
  prefix: `${config.redisPrefix}:`,
  onError: (err) => logger.warn({ error: errorText(err) }, "redis"),
});
const gateway = createGateway(config, {
  db: handle.db,
  stores,
  clock: systemClock,
  // The phone bank started alone falls back on the same development secret.
  fallbackSecrets: { phonebankSecret: DEV_PHONEBANK_SECRET, auditIpKey: "phaselock-dev-ip-key" },
  onError: (err) => logger.error({ error: errorText(err) }, "gateway error"),
  metricsRegistry: createMetricsRegistry("gateway", { process: true }),
  logger,
});
await gateway.start();

const server = createServer(gateway.handler);
server.once("error", (err: NodeJS.ErrnoException) => {
  console.error(
    `gateway: ${err.code === "EADDRINUSE" ? `port ${config.port} on ${config.host} is already in use: stop what holds it, or set GATEWAY_PORT` : `cannot listen: ${err.message}`}`,
  );
  process.exit(1);
});
server.listen(config.port, config.host, () => {
  const info = server.address() as AddressInfo;
  lock?.setPorts({ gateway: info.port });
  // A JSON line like every other on stdout (a log shipper parses them all).
  announce(
    logger,
    `listening on http://${info.address}:${info.port} -> ${config.upstreamUrl} (${config.redisUrl ? "Redis change feed" : "in-process store"})`,
  );
});

// SIGTERM: stop accepting, drain in-flight requests, write every buffered audit event, close the
// pools, exit 0. A second signal exits at once.
installShutdown({
  name: "gateway",
  servers: [server],
  close: async () => {
    await gateway.stop(); // graceful shutdown loses no audit event
    await stores.close();
    await handle.close();
    lock?.release();
    logger.flush();
  },
});
