import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { createLogger, createMetricsRegistry, installShutdown } from "@phaselock/core";
import { createApp } from "./app.ts";
import { parsePhonebankEnv } from "./env.ts";

let env: ReturnType<typeof parsePhonebankEnv>;
try {
  env = parsePhonebankEnv(process.env);
} catch (err) {
  console.error(`phonebank: ${(err as Error).message}`);
  process.exit(1);
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
  console.log(`phonebank: listening on http://${host}:${info.port} (synthetic members, no real people)`);
});

// SIGTERM: stop accepting, let in-flight requests finish, exit 0; a second signal exits at once.
installShutdown({
  name: "phonebank",
  servers: [server as Server],
  close: async () => {
    logger.flush();
  },
});
