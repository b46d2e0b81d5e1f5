import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { DEV_PHONEBANK_SECRET, resolveDataDir, systemClock } from "@phaselock/core";
import { assertMigrated, createDb } from "@phaselock/db";
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

const handle = createDb({
  databaseUrl: config.databaseUrl,
  dataDir: config.databaseUrl ? undefined : resolveDataDir(config.dataDir, process.env.INIT_CWD),
});
try {
  await assertMigrated(handle.db);
} catch (err) {
  console.error(`gateway: ${(err as Error).message}`);
  await handle.close();
  process.exit(1);
}

const stores = createStores({
  redisUrl: config.redisUrl,
  prefix: `${config.redisPrefix}:`,
  onError: (err) => console.error(`gateway: redis: ${(err as Error).message}`),
});
const gateway = createGateway(config, {
  db: handle.db,
  stores,
  clock: systemClock,
  // The phone bank started alone falls back on the same development secret.
  fallbackSecrets: { phonebankSecret: DEV_PHONEBANK_SECRET, auditIpKey: "phaselock-dev-ip-key" },
  onError: (err) => console.error(`gateway: ${(err as Error).message}`),
});
await gateway.start();

const server = createServer(gateway.handler);
server.listen(config.port, config.host, () => {
  const info = server.address() as AddressInfo;
  console.log(
    `gateway listening on http://${info.address}:${info.port} -> ${config.upstreamUrl} (${config.redisUrl ? "Redis change feed" : "in-process store"})`,
  );
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`gateway: ${signal}, draining`);
  server.close();
  await gateway.stop(); // graceful shutdown loses no audit event
  await stores.close();
  await handle.close();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
