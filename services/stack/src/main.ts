import { createServer } from "node:http";
import { serve } from "@hono/node-server";
import { parseStackEnv } from "./env.ts";
import { buildStack } from "./stack.ts";

let config: ReturnType<typeof parseStackEnv>;
try {
  config = parseStackEnv(process.env);
} catch (err) {
  console.error(`phaselock: ${(err as Error).message}`);
  process.exit(1);
}

const stack = await buildStack(config, { say: (line) => console.log(line) });
const { host } = config;
const servers = [
  serve({ fetch: stack.phonebank.fetch, port: config.phonebankPort, hostname: host }),
  createServer(stack.gateway.handler).listen(config.gateway.port, host),
  serve({ fetch: stack.tokenService.app.fetch, port: config.tokenService.port, hostname: host }),
];

const { dev, demo } = stack;
const adminTokenSet = config.tokenService.adminToken !== undefined;
const lines = [
  "",
  "Phaselock is running",
  `  token service  http://${host}:${config.tokenService.port}   API reference: /docs, OpenAPI: /openapi.json`,
  `  gateway        http://${host}:${config.gateway.port}   volunteers' entry point`,
  `  phone bank     http://${host}:${config.phonebankPort}   answers only through the gateway`,
  `  store          ${config.redisUrl ? "Redis (REDIS_URL)" : "in-process (single instance)"}; database: ${stack.where}`,
  "",
  (dev.created || stack.seededNow) && !adminTokenSet
    ? `Admin token (${dev.created ? "generated; " : ""}also in ${dev.path}):\n  ${stack.adminToken}`
    : `Admin token: ${adminTokenSet ? "from ADMIN_TOKEN" : `in ${dev.path}`}`,
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
  await stack.stop();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown());
process.on("SIGTERM", () => void shutdown());
