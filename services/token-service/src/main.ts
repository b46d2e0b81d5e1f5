/**
 * `pnpm start:token-service`: the token service alone, for running against a real Postgres (and
 * Redis, with several gateways). The only module that reads the environment.
 */
import { serve } from "@hono/node-server";
import { BatchAuditWriter } from "@phaselock/audit";
import { loadDevSecrets, resolveDataDir, systemClock } from "@phaselock/core";
import { assertMigrated, createDb, createRepos } from "@phaselock/db";
import { type BusStatus, type ChangeBus, MemoryBus, RedisBus } from "@phaselock/state";
import { parseKek } from "@phaselock/tokens";
import { createApp } from "./app.ts";
import { parseEnv } from "./env.ts";
import { consoleLogger } from "./errors.ts";
import { KeyManager, keyChangeMessage } from "./keys.ts";

const log = consoleLogger;

function refuse(message: string): never {
  console.error(`token-service: ${message}`);
  process.exit(1);
}

let env: ReturnType<typeof parseEnv>;
try {
  env = parseEnv(process.env);
} catch (err) {
  refuse((err as Error).message);
}
const production = env.NODE_ENV === "production";
const dataDir = resolveDataDir(env.DATA_DIR, process.env.INIT_CWD);
let devSecrets: ReturnType<typeof loadDevSecrets> | undefined;
const dev = () => {
  devSecrets ??= loadDevSecrets(dataDir);
  return devSecrets;
};

if (production && !env.KEY_ENCRYPTION_KEY) {
  refuse("KEY_ENCRYPTION_KEY is required when NODE_ENV=production (32 bytes: 64 hex characters or base64).");
}
if (production && !env.ADMIN_TOKEN) {
  refuse("ADMIN_TOKEN is required when NODE_ENV=production (at least 32 characters).");
}

let kek: Uint8Array;
try {
  if (env.KEY_ENCRYPTION_KEY) {
    kek = parseKek(env.KEY_ENCRYPTION_KEY);
  } else {
    const generated = dev();
    log.warn(
      `no KEY_ENCRYPTION_KEY: ${generated.created ? "generated" : "using"} a development key in ${generated.path}; set KEY_ENCRYPTION_KEY in production`,
    );
    kek = parseKek(generated.secrets.keyEncryptionKey);
  }
} catch (err) {
  refuse((err as Error).message);
}

let adminToken = env.ADMIN_TOKEN;
if (!adminToken) {
  const generated = dev();
  adminToken = generated.secrets.adminToken;
  if (generated.created)
    console.log(`token-service: generated ADMIN_TOKEN (kept in ${generated.path}):\n  ${adminToken}`);
  else console.log(`token-service: ADMIN_TOKEN unset, using the one kept in ${generated.path}`);
}

const handle = createDb({ databaseUrl: env.DATABASE_URL, dataDir: env.DATABASE_URL ? undefined : dataDir });
try {
  await assertMigrated(handle.db);
} catch (err) {
  await handle.close();
  refuse(
    `${(err as Error).message} (${env.DATABASE_URL ? "DATABASE_URL" : `embedded database in ${dataDir}`})`,
  );
}

const clock = systemClock;
const repos = createRepos(handle.db);

let busUp = !env.REDIS_URL;
const bus: ChangeBus = env.REDIS_URL
  ? new RedisBus({ url: env.REDIS_URL, onError: (err) => log.warn("change feed", { error: String(err) }) })
  : new MemoryBus();

const keys = new KeyManager({ signingKeys: repos.signingKeys, kek, clock });
let ensured: Awaited<ReturnType<KeyManager["ensureActiveKey"]>>;
try {
  ensured = await keys.ensureActiveKey();
} catch (err) {
  await handle.close();
  refuse(`cannot load the signing key: ${(err as Error).message}`);
}
if (ensured.created) await bus.publish(keyChangeMessage(ensured.created)).catch(() => {});

// Another instance may rotate: pick up its key, so every instance signs with the active one.
bus.subscribe({
  onMessage: (msg) => {
    if (msg.change.type === "signing-key") {
      keys.refresh().catch((err: unknown) => log.error("signing key refresh failed", { error: String(err) }));
    }
  },
  onStatus: (status: BusStatus) => {
    if (status === "connected" || status === "heartbeat") busUp = true;
    if (status === "disconnected") busUp = false;
  },
});

const audit = new BatchAuditWriter({
  db: handle.db,
  clock,
  onError: (err) => log.error("audit writer", { error: err instanceof Error ? err.message : String(err) }),
});

const app = createApp({
  db: handle.db,
  repos,
  keys,
  clock,
  bus,
  audit,
  config: { issuer: env.TOKEN_SERVICE_URL, publicGatewayUrl: env.PUBLIC_GATEWAY_URL, adminToken },
  ready: () => busUp,
  logger: log,
});

const server = serve({ fetch: app.fetch, port: env.TOKEN_SERVICE_PORT, hostname: env.HOST }, (info) => {
  console.log(
    `token-service: listening on http://${info.address}:${info.port} (iss ${env.TOKEN_SERVICE_URL}, signing key ${ensured.kid}); API reference at /docs`,
  );
});

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`token-service: ${signal}, shutting down`);
  server.close();
  await audit.close().catch((err: unknown) => log.error("audit close", { error: String(err) }));
  await bus.close().catch(() => {});
  await handle.close();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
