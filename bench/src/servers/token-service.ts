/**
 * Child: the token service in a process of its own, over the bench database and (production
 * shape) the Redis change feed, serving its HTTP API. The runner seeds and revokes through it.
 */
import { createServer } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { systemClock } from "@phaselock/core";
import { createDb } from "@phaselock/db";
import { type ChangeBus, MemoryBus, RedisBus } from "@phaselock/state";
import { close, listen, runChild } from "../child.ts";
import { createTokenService } from "../token-service.ts";

export interface TokenServiceConfig {
  databaseUrl?: string;
  dataDir?: string;
  adminToken: string;
  redisUrl?: string;
  /** e.g. `pl:bench:abc:` */
  redisPrefix?: string;
}

runChild<TokenServiceConfig>(async (bench) => {
  const handle = createDb({ databaseUrl: bench.databaseUrl, dataDir: bench.dataDir });
  const bus: ChangeBus = bench.redisUrl
    ? new RedisBus({ url: bench.redisUrl, prefix: bench.redisPrefix ?? "phaselock:" })
    : new MemoryBus();
  const ts = await createTokenService(handle.db, { bus, clock: systemClock, adminToken: bench.adminToken });
  const server = createServer(getRequestListener(ts.app.fetch));
  const port = await listen(server);
  return {
    port,
    stop: async () => {
      await close(server);
      await ts.close();
      await bus.close();
      await handle.close();
      return undefined;
    },
  };
});
