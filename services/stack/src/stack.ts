import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BatchAuditWriter } from "@phaselock/audit";
import {
  type Clock,
  createLogger,
  createMetricsRegistry,
  type DestinationStream,
  errorText,
  loadDevSecrets,
  messageLogger,
  sha256Hex,
  stdoutDestination,
  systemClock,
} from "@phaselock/core";
import { type LinksRepo, migrate, openDb, stallWatchFor } from "@phaselock/db";
import { createGateway, type GatewayMetrics } from "@phaselock/gateway";
import { createApp as createPhonebankApp } from "@phaselock/phonebank";
import { createStores } from "@phaselock/state";
import { createTokenService, type Logger } from "@phaselock/token-service";
import type { StackConfig } from "./env.ts";
import { type DemoLinks, seedDemo } from "./seed.ts";

export interface StackOptions {
  clock?: Clock;
  /** Progress lines (what `pnpm start` prints while it starts). */
  say?: (line: string) => void;
  logger?: Logger;
  /** Where the services' JSON log lines go (default stdout); tests read them. */
  logDestination?: DestinationStream;
  /** Node's process metrics on each service's /metrics (main.ts only: one set per process). */
  processMetrics?: boolean;
}

/**
 * Everything `pnpm start` runs, built but not listening: one database and one store shared by the
 * token service, the gateway (both from their own builders) and the phone bank, and the demo data
 * seeded into an empty database through the token service's API.
 */
export async function buildStack(config: StackConfig, opts: StackOptions = {}) {
  const clock = opts.clock ?? systemClock;
  const say = opts.say ?? (() => {});
  const dev = loadDevSecrets(config.dataDir);

  const where = config.databaseUrl ? "PostgreSQL (DATABASE_URL)" : `embedded PGlite in ${config.dataDir}`;
  say(`phaselock: opening ${where}${config.databaseUrl ? "" : " (the first start takes a few seconds)"}`);
  const handle = await openDb({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    stallWatch: stallWatchFor(config.tokenService.dbStallTimeoutMs),
  });
  const migrated = await migrate(handle);
  if (migrated.applied > 0) say(`phaselock: applied ${migrated.applied} migration(s)`);

  const stores = createStores({
    redisUrl: config.redisUrl,
    prefix: `${config.redisPrefix}:`,
    onError: (err) => console.error(`phaselock: redis: ${(err as Error).message}`),
  });
  const destination = opts.logDestination ?? stdoutDestination();
  const level = config.tokenService.logLevel;
  const loggers = {
    tokenService: createLogger({ service: "token-service", level, destination }),
    gateway: createLogger({ service: "gateway", level, destination }),
    phonebank: createLogger({ service: "phonebank", level, destination }),
  };
  const registry = (service: string) =>
    createMetricsRegistry(service, { process: opts.processMetrics === true });
  // One writer: both services append to the same hash chain. Its commits are the gateway's metric.
  let gatewayMetrics: GatewayMetrics | undefined;
  const audit = new BatchAuditWriter({
    db: handle.db,
    clock,
    onCommit: (seconds, events) => gatewayMetrics?.auditCommit(seconds, events),
  });
  const infra = { db: handle.db, stores, clock, audit };

  const tokenService = createTokenService(config.tokenService, {
    ...infra,
    logger: opts.logger ?? messageLogger(loggers.tokenService),
    fallbackSecrets: dev.secrets,
    metricsRegistry: registry("token-service"),
    requestLogger: loggers.tokenService,
  });
  await tokenService.start();
  const adminToken = tokenService.deps.config.adminToken;

  const gateway = createGateway(config.gateway, {
    ...infra,
    fallbackSecrets: dev.secrets,
    onError: (err) => loggers.gateway.error({ error: errorText(err) }, "gateway error"),
    metricsRegistry: registry("gateway"),
    logger: loggers.gateway,
  });
  gatewayMetrics = gateway.metrics;
  await gateway.start();

  const phonebank = createPhonebankApp({
    secret: gateway.deps.config.upstreamSecret,
    clock,
    metricsToken: config.gateway.metricsToken,
    metricsRegistry: registry("phonebank"),
    logger: loggers.phonebank,
  });

  // Seed an empty database through the token service's own API.
  const linksFile = join(config.dataDir, "demo-links.json");
  let demo: DemoLinks | undefined;
  let seededNow = false;
  if ((await tokenService.deps.repos.contests.list()).length === 0) {
    say("phaselock: empty database, seeding the demo contests");
    demo = await seedDemo(
      (path, init) =>
        Promise.resolve(
          tokenService.app.request(path, {
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
    // Shown on this start's gateway: a later start may set another GATEWAY_PORT or
    // PUBLIC_GATEWAY_URL, and the code in the link works on whichever gateway answers.
    for (const sample of [demo.leftover, demo.ballot]) {
      sample.url = `${config.gateway.publicGatewayUrl.replace(/\/+$/, "")}/l/${sample.url.slice(sample.url.lastIndexOf("/l/") + 3)}`;
    }
    // A later start: the ballot link may have been revoked, spent or outlived since; say what it
    // is now rather than that it works (read from the database: asking the gateway would audit).
    demo.ballot.expect = await sampleLinkNow(tokenService.deps.repos.links, demo.ballot, clock.now());
  }

  return {
    config,
    where,
    dev,
    adminToken,
    demo,
    seededNow,
    handle,
    stores,
    tokenService,
    gateway,
    phonebank,
    /** Stops both services, then what they share. */
    stop: async () => {
      await gateway.stop();
      await tokenService.stop();
      await audit.close();
      await stores.close();
      await handle.close();
      for (const logger of Object.values(loggers)) logger.flush();
    },
  };
}

export type BuiltStack = Awaited<ReturnType<typeof buildStack>>;

/** What a sample link is now: its seeding's words while it is active, else its status. */
async function sampleLinkNow(
  links: Pick<LinksRepo, "getByCodeHash" | "getWithStatus">,
  sample: DemoLinks["ballot"],
  now: Date,
): Promise<string> {
  const code = sample.url.slice(sample.url.lastIndexOf("/l/") + 3);
  const link = await links.getByCodeHash(sha256Hex(code));
  const status = link ? (await links.getWithStatus(link.id, now))?.status : undefined;
  if (status === "active") return sample.expect;
  return `no longer works: ${status ?? "not found"} (issue a new one, or start on an empty DATA_DIR)`;
}
