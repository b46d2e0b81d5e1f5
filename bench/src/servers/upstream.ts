/** Child: the demo phone bank (the upstream every proxy in the comparison forwards to). */

import type { Server } from "node:http";
import { createAdaptorServer } from "@hono/node-server";
import { createApp } from "@phaselock/phonebank";
import { close, listen, runChild } from "../child.ts";

export interface UpstreamConfig {
  secret: string;
}

runChild<UpstreamConfig>(async (config) => {
  const app = createApp({ secret: config.secret });
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  const port = await listen(server);
  return {
    port,
    stop: async () => {
      await close(server);
      return undefined;
    },
  };
});
