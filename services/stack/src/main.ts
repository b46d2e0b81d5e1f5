import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { getRequestListener } from "@hono/node-server";
import {
  acquireDataDirLock,
  type DataDirLock,
  DataDirLockedError,
  installShutdown,
  localServiceUrl,
  lockedAdvice,
  resolveDataDir,
} from "@phaselock/core";
import { parseStackEnv } from "./env.ts";
import { buildStack } from "./stack.ts";

function fail(message: string): never {
  console.error(`phaselock: ${message}`);
  process.exit(1);
}

let config: ReturnType<typeof parseStackEnv>;
try {
  config = parseStackEnv(process.env);
} catch (err) {
  fail((err as Error).message);
}
// DATA_DIR and AUDIT_CHECKPOINT_DIR from where pnpm ran, as each service alone reads them (and
// the CLIs): with `pnpm -C <repo> start` the process runs in the repository.
config = {
  ...config,
  dataDir: resolveDataDir(config.dataDir, process.env.INIT_CWD),
  tokenService: {
    ...config.tokenService,
    auditCheckpointDir: resolveDataDir(config.tokenService.auditCheckpointDir, process.env.INIT_CWD),
  },
};

// The embedded database belongs to one process: taken before anything opens it or prints a link.
let lock: DataDirLock | undefined;
if (!config.databaseUrl) {
  try {
    lock = acquireDataDirLock(config.dataDir, { command: "pnpm start" });
  } catch (err) {
    if (err instanceof DataDirLockedError) {
      fail(`${err.message}.\n${lockedAdvice(err.holder)}`);
    }
    fail((err as Error).message);
  }
}

// The ports are bound before the database opens, so a port in use fails at once with a message
// rather than after the banner with a raw EADDRINUSE stack. Until the stack is built they answer 503.
type Listener = (req: IncomingMessage, res: ServerResponse) => void;
const notReady: Listener = (_req, res) => {
  res.writeHead(503, { "content-type": "text/plain", "retry-after": "1" });
  res.end("starting\n");
};
const { host } = config;
const slots = [
  { name: "phonebank", port: config.phonebankPort, listener: notReady },
  { name: "gateway", port: config.gateway.port, listener: notReady },
  { name: "tokenService", port: config.tokenService.port, listener: notReady },
];
const servers: Server[] = [];
for (const slot of slots) {
  const server = createServer((req, res) => slot.listener(req, res));
  servers.push(server);
  try {
    await new Promise<void>((ok, ko) => {
      server.once("error", ko);
      server.listen(slot.port, host, () => {
        server.off("error", ko);
        ok();
      });
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    for (const s of servers) s.close();
    fail(
      code === "EADDRINUSE"
        ? `port ${slot.port} on ${host} (${slot.name}) is already in use — is another Phaselock or another program running? Stop it, or set ${portVariable(slot.name)}.`
        : `cannot listen on ${host}:${slot.port} (${slot.name}): ${(err as Error).message}`,
    );
  }
}
lock?.setPorts(Object.fromEntries(slots.map((s) => [s.name, s.port])));

function portVariable(name: string): string {
  return (
    { phonebank: "PHONEBANK_PORT", gateway: "GATEWAY_PORT", tokenService: "TOKEN_SERVICE_PORT" }[name] ??
    "the port"
  );
}

let stack: Awaited<ReturnType<typeof buildStack>>;
try {
  stack = await buildStack(config, { say: (line) => console.log(line), processMetrics: true });
} catch (err) {
  for (const s of servers) s.close();
  fail((err as Error).message);
}
slots[0]!.listener = getRequestListener(stack.phonebank.fetch);
slots[1]!.listener = stack.gateway.handler;
slots[2]!.listener = getRequestListener(stack.tokenService.app.fetch);

const { dev, demo } = stack;
const adminTokenSet = config.tokenService.adminToken !== undefined;
const lines = [
  "",
  "Phaselock is running",
  `  token service  ${localServiceUrl(host, config.tokenService.port)}   API reference: /docs, OpenAPI: /openapi.json`,
  `  gateway        ${localServiceUrl(host, config.gateway.port)}   volunteers' entry point`,
  `  phone bank     ${localServiceUrl(host, config.phonebankPort)}   answers only through the gateway`,
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

// SIGTERM or Ctrl-C: stop accepting, drain in-flight requests (10 s at most), write every buffered
// audit event, close the pools, exit 0. A second signal exits at once.
installShutdown({
  name: "phaselock",
  servers,
  close: async () => {
    await stack.stop();
    // The lock goes last: the database is closed by now. process.exit releases it too.
    lock?.release();
  },
});
