/**
 * `pnpm start:token-service`: the token service alone, for running against a real Postgres (and
 * Redis, with several gateways). The only module that reads the environment.
 */
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import {
  acquireDataDirLock,
  announce,
  createLogger,
  createMetricsRegistry,
  DataDirLockedError,
  errorText,
  installShutdown,
  loadDevSecrets,
  lockedAdvice,
  messageLogger,
  resolveDataDir,
  systemClock,
} from "@phaselock/core";
import { assertMigrated, openDb, stallWatchFor } from "@phaselock/db";
import { type ChangeBus, MemoryBus, RedisBus } from "@phaselock/state";
import { parseTokenServiceEnv } from "./env.ts";
import { createTokenService } from "./service.ts";

function refuse(message: string): never {
  console.error(`token-service: ${message}`);
  process.exit(1);
}

let settings: ReturnType<typeof parseTokenServiceEnv>;
try {
  settings = parseTokenServiceEnv(process.env);
} catch (err) {
  refuse((err as Error).message);
}
const pinoLogger = createLogger({ service: "token-service", level: settings.logLevel });
const log = messageLogger(pinoLogger);
const dataDir = resolveDataDir(settings.dataDir, process.env.INIT_CWD);
settings = {
  ...settings,
  auditCheckpointDir: resolveDataDir(settings.auditCheckpointDir, process.env.INIT_CWD),
};

// The embedded database belongs to one process: taken before anything opens it.
let lock: ReturnType<typeof acquireDataDirLock> | undefined;
if (!settings.databaseUrl) {
  try {
    lock = acquireDataDirLock(dataDir, { command: "pnpm start:token-service" });
  } catch (err) {
    refuse(
      err instanceof DataDirLockedError
        ? `${err.message}. ${lockedAdvice(err.holder)}`
        : (err as Error).message,
    );
  }
}

let handle: Awaited<ReturnType<typeof openDb>>;
try {
  handle = await openDb({
    databaseUrl: settings.databaseUrl,
    dataDir: settings.databaseUrl ? undefined : dataDir,
    stallWatch: stallWatchFor(settings.dbStallTimeoutMs),
  });
} catch (err) {
  refuse((err as Error).message);
}
try {
  await assertMigrated(handle.db);
} catch (err) {
  await handle.close();
  refuse(
    `${(err as Error).message} (${settings.databaseUrl ? "DATABASE_URL" : `embedded database in ${dataDir}`})`,
  );
}

// Development only (production requires both): generated once, kept beside the embedded database;
// only once the database is known to be usable, so a refused start prints no token it never used.
let fallbackSecrets: { adminToken?: string; keyEncryptionKey?: string } = {};
if (!settings.keyEncryptionKey || !settings.adminToken) {
  let dev: ReturnType<typeof loadDevSecrets>;
  try {
    dev = loadDevSecrets(dataDir);
  } catch (err) {
    await handle.close();
    refuse((err as Error).message);
  }
  fallbackSecrets = dev.secrets;
  if (!settings.keyEncryptionKey) {
    log.warn(
      `no KEY_ENCRYPTION_KEY: ${dev.created ? "generated" : "using"} a development key in ${dev.path}; set KEY_ENCRYPTION_KEY in production`,
    );
  }
  if (!settings.adminToken) {
    // For the person at the terminal, on stderr: stdout holds only JSON log lines, never a token.
    if (dev.created)
      console.error(
        `token-service: generated ADMIN_TOKEN (kept in ${dev.path}):\n  ${dev.secrets.adminToken}`,
      );
    else console.error(`token-service: ADMIN_TOKEN unset, using the one kept in ${dev.path}`);
  }
}

const bus: ChangeBus = settings.redisUrl
  ? new RedisBus({
      url: settings.redisUrl,
      prefix: `${settings.redisPrefix}:`,
      onError: (err) => log.warn("change feed", { error: errorText(err) }),
    })
  : new MemoryBus();

let service: ReturnType<typeof createTokenService>;
let kid: string;
try {
  service = createTokenService(settings, {
    db: handle.db,
    stores: { bus },
    clock: systemClock,
    logger: log,
    fallbackSecrets,
    metricsRegistry: createMetricsRegistry("token-service", { process: true }),
    requestLogger: pinoLogger,
  });
} catch (err) {
  await handle.close();
  refuse((err as Error).message);
}
try {
  ({ kid } = await service.start());
} catch (err) {
  await handle.close();
  refuse(`cannot start: ${(err as Error).message}`);
}

const server = serve({ fetch: service.app.fetch, port: settings.port, hostname: settings.host }, (info) => {
  lock?.setPorts({ tokenService: info.port });
  // A JSON line like every other on stdout (a log shipper parses them all).
  announce(
    pinoLogger,
    `listening on http://${info.address}:${info.port} (iss ${settings.issuer}, signing key ${kid}); API reference at /docs`,
  );
});
server.once("error", (err: NodeJS.ErrnoException) => {
  refuse(
    err.code === "EADDRINUSE"
      ? `port ${settings.port} on ${settings.host} is already in use: stop what holds it, or set TOKEN_SERVICE_PORT`
      : `cannot listen: ${err.message}`,
  );
});

// SIGTERM: stop accepting, drain in-flight requests, write every buffered audit event, close the
// pools, exit 0 (1 if the audit could not be written). A second signal exits at once.
installShutdown({
  name: "token-service",
  servers: [server as Server],
  close: async () => {
    try {
      await service.stop();
    } finally {
      await bus.close().catch(() => {});
      await handle.close();
      lock?.release();
      pinoLogger.flush();
    }
  },
});
