import { serve } from "@hono/node-server";
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

const app = createApp({ secret: env.secret });
const server = serve({ fetch: app.fetch, port: env.port, hostname: env.host }, (info) => {
  const host = info.family === "IPv6" ? `[${info.address}]` : info.address;
  console.log(`phonebank: listening on http://${host}:${info.port} (synthetic members, no real people)`);
});

const shutdown = () => server.close(() => process.exit(0));
process.once("SIGINT", shutdown);
process.once("SIGTERM", shutdown);
