import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { announce, createLogger, createMetricsRegistry, installShutdown } from "@phaselock/core";
import { assertMigrated, openDb } from "@phaselock/db";
import { createApp } from "./app.ts";
import { parsePhonebankEnv } from "./env.ts";

let env: ReturnType<typeof parsePhonebankEnv>;
try {
  env = parsePhonebankEnv(process.env);
} catch (err) {
  console.error(`phonebank: ${(err as Error).message}`);
  process.exit(1);
}

// The phone bank keeps nothing in a database, but started beside the other services on one
// (DATABASE_URL) it refuses an unmigrated one as they do. Without DATABASE_URL it opens none: no
// embedded database, no DATA_DIR lock (that belongs to the service that uses it).
if (env.databaseUrl) {
  let handle: Awaited<ReturnType<typeof openDb>> | undefined;
  try {
    handle = await openDb({ databaseUrl: env.databaseUrl });
    await assertMigrated(handle.db);
  } catch (err) {
    await handle?.close();
    console.error(`phonebank: ${(err as Error).message} (DATABASE_URL)`);
    process.exit(1);
  }
  await handle.close();
}

if (env.usingDevSecret) {
  console.warn("phonebank: PHONEBANK_SECRET is unset; using the development secret (never in production)");
}

const logger = createLogger({ service: "phonebank", level: env.logLevel });
const app = createApp({
  secret: env.secret,
  metricsToken: env.metricsToken,
  metricsRegistry: createMetricsRegistry("phonebank", { process: true }),
  logger,
});
const server = serve({ fetch: app.fetch, port: env.port, hostname: env.host }, (info) => {
  const host = info.family === "IPv6" ? `[${info.address}]` : info.address;
  // A JSON line like every other on stdout (a log shipper parses them all).
  announce(logger, `listening on http://${host}:${info.port} (synthetic members, no real people)`);
});
// One line, as the token service and the gateway say it, not Node's unhandled 'error' stack trace.
server.once("error", (err: NodeJS.ErrnoException) => {
  console.error(
    `phonebank: ${err.code === "EADDRINUSE" ? `port ${env.port} on ${env.host} is already in use: stop what holds it, or set PHONEBANK_PORT` : `cannot listen: ${err.message}`}`,
  );
  process.exit(1);
});

// SIGTERM: stop accepting, let in-flight requests finish, exit 0; a second signal exits at once.
installShutdown({
  name: "phonebank",
  servers: [server as Server],
  close: async () => {
    logger.flush();
  },
});
