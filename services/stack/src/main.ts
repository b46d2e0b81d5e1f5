import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { BatchAuditWriter } from "@phaselock/audit";
import { loadDevSecrets, systemClock } from "@phaselock/core";
import { createDb, createRepos, migrate } from "@phaselock/db";
import {
  createApp as createGatewayApp,
  createHttpUpstream,
  createNodeHandler,
  startVersionPoller,
  wireGateway,
} from "@phaselock/gateway";
import { createApp as createPhonebankApp } from "@phaselock/phonebank";
import { createStores } from "@phaselock/state";
import { createApp as createTokenServiceApp, KeyManager, keyChangeMessage } from "@phaselock/token-service";
import { parseKek } from "@phaselock/tokens";
import { parseStackEnv } from "./env.ts";
import { type DemoLinks, seedDemo } from "./seed.ts";

const env = parseStackEnv(process.env);
const clock = systemClock;
const production = env.NODE_ENV === "production";
if (production && !env.KEY_ENCRYPTION_KEY) {
  console.error(
    "phaselock: KEY_ENCRYPTION_KEY is required when NODE_ENV=production (32 bytes as 64 hex characters or base64).",
  );
  process.exit(1);
}

const dev = loadDevSecrets(env.DATA_DIR);
const adminToken = env.ADMIN_TOKEN ?? dev.secrets.adminToken;
const kek = parseKek(env.KEY_ENCRYPTION_KEY ?? dev.secrets.keyEncryptionKey);
const phonebankSecret = env.PHONEBANK_SECRET ?? dev.secrets.phonebankSecret;
const upstreamUrl = env.UPSTREAM_URL ?? `http://127.0.0.1:${env.PHONEBANK_PORT}`;

const where = env.DATABASE_URL ? "PostgreSQL (DATABASE_URL)" : `embedded PGlite in ${env.DATA_DIR}`;
console.log(`phaselock: opening ${where}${env.DATABASE_URL ? "" : " (the first start takes a few seconds)"}`);
const handle = createDb({ databaseUrl: env.DATABASE_URL, dataDir: env.DATA_DIR });
const migrated = await migrate(handle);
if (migrated.applied > 0) console.log(`phaselock: applied ${migrated.applied} migration(s)`);
const repos = createRepos(handle.db);

const stores = createStores({
  redisUrl: env.REDIS_URL,
  onError: (err) => console.error(`phaselock: redis: ${(err as Error).message}`),
});
const bus = stores.bus;
const audit = new BatchAuditWriter({ db: handle.db, clock });

// Token service
const keys = new KeyManager({ signingKeys: repos.signingKeys, kek, clock });
const ensured = await keys.ensureActiveKey();
if (ensured.created) await bus.publish(keyChangeMessage(ensured.created)).catch(() => {});
const tokenApp = createTokenServiceApp({
  db: handle.db,
  repos,
  keys,
  clock,
  bus,
  audit,
  config: { issuer: env.TOKEN_SERVICE_URL, publicGatewayUrl: env.PUBLIC_GATEWAY_URL, adminToken },
});

// Phone bank
const phonebankApp = createPhonebankApp({ secret: phonebankSecret });

// Gateway
const gateway = wireGateway({
  db: handle.db,
  bus,
  clock,
  rateLimiter: stores.rateLimiter,
  recordQuota: stores.recordQuota,
  audit,
  upstream: createHttpUpstream({ baseUrl: upstreamUrl, timeoutMs: 10_000, maxBodyBytes: 64 * 1024 }),
  issuer: env.TOKEN_SERVICE_URL,
  staleAfterMs: env.STALE_AFTER_MS,
  config: {
    upstreamSecret: phonebankSecret,
    secureCookies: env.PUBLIC_GATEWAY_URL.startsWith("https:"),
    maxBodyBytes: 64 * 1024,
    ipHashKey: env.AUDIT_IP_KEY ?? dev.secrets.auditIpKey,
    maxDevicesPerLink: 3,
    sessionTtlSeconds: env.SESSION_TTL_SECONDS,
    publicGatewayUrl: env.PUBLIC_GATEWAY_URL,
  },
  onError: (err) => console.error(`gateway: policy state: ${(err as Error).message}`),
});
await gateway.start();
const poller = startVersionPoller(gateway.state, handle.db);

// Seed an empty database through the token service's own API.
const linksFile = join(env.DATA_DIR, "demo-links.json");
let demo: DemoLinks | undefined;
let seededNow = false;
if ((await repos.contests.list()).length === 0) {
  console.log("phaselock: empty database, seeding the demo contests");
  demo = await seedDemo(
    (path, init) =>
      Promise.resolve(
        tokenApp.request(path, {
          method: init.method,
          headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
          body: init.body === undefined ? undefined : JSON.stringify(init.body),
        }),
      ),
    clock.now(),
  );
  seededNow = true;
  // The sample tokens are demo data: kept beside the dev database so a restart can show them again.
  writeFileSync(linksFile, `${JSON.stringify(demo, null, 2)}\n`, { mode: 0o600 });
} else if (existsSync(linksFile)) {
  demo = JSON.parse(readFileSync(linksFile, "utf8")) as DemoLinks;
}

const servers = [
  serve({ fetch: phonebankApp.fetch, port: env.PHONEBANK_PORT, hostname: env.HOST }),
  // /pb/* on node:http directly (the proxy's fast path); every other route through Hono.
  createServer(createNodeHandler(gateway.deps, createGatewayApp(gateway.deps))).listen(
    env.GATEWAY_PORT,
    env.HOST,
  ),
  serve({ fetch: tokenApp.fetch, port: env.TOKEN_SERVICE_PORT, hostname: env.HOST }),
];

const lines = [
  "",
  "Phaselock is running",
  `  token service  http://${env.HOST}:${env.TOKEN_SERVICE_PORT}   API reference: /docs, OpenAPI: /openapi.json`,
  `  gateway        http://${env.HOST}:${env.GATEWAY_PORT}   volunteers' entry point`,
  `  phone bank     http://${env.HOST}:${env.PHONEBANK_PORT}   answers only through the gateway`,
  `  store          ${env.REDIS_URL ? "Redis (REDIS_URL)" : "in-process (single instance)"}; database: ${where}`,
  "",
  (dev.created || seededNow) && !env.ADMIN_TOKEN
    ? `Admin token (${dev.created ? "generated; " : ""}also in ${dev.path}):\n  ${adminToken}`
    : `Admin token: ${env.ADMIN_TOKEN ? "from ADMIN_TOKEN" : `in ${dev.path}`}`,
];
if (demo) {
  lines.push(
    "",
    "Sample links:",
    `  1. Leftover ge-2019 link — ${demo.leftover.expect}`,
    `     ${demo.leftover.url}`,
    `  2. leadership-2020 nominations link — refused at issuance: ${demo.nominations.status} ${demo.nominations.code}`,
    `  3. Ballot link (starmer-2020) — ${demo.ballot.expect}`,
    `     ${demo.ballot.url}`,
  );
}
lines.push("", "Ctrl-C stops everything.");
console.log(lines.join("\n"));

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  for (const s of servers) s.close();
  poller.stop();
  await gateway.stop();
  await audit.close();
  await stores.close();
  await handle.close();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown());
process.on("SIGTERM", () => void shutdown());
