import { type Clock, systemClock } from "@phaselock/core";
import { Hono } from "hono";
import { CallStore } from "./calls.ts";
import type { PhonebankDeps, PhonebankEnv } from "./deps.ts";
import { jsonError } from "./errors.ts";
import { createMemberDirectory, type MemberDirectory } from "./members.ts";
import { requireGateway } from "./middleware/gateway.ts";
import { registerCalls } from "./routes/calls.ts";
import { registerHealth } from "./routes/health.ts";
import { registerMembers } from "./routes/members.ts";
import { registerPage } from "./routes/page.ts";

export interface PhonebankOptions {
  /** Shared with the gateway, which sends it as `X-Phaselock-Gateway-Secret`. */
  secret: string;
  /** Default: 50,000 synthetic members. */
  members?: MemberDirectory;
  clock?: Clock;
  /** Calls remembered for recording an outcome; the oldest are forgotten past this. */
  maxCalls?: number;
}

/**
 * The demo phone bank: the upstream the gateway protects. Every route but `/healthz` needs the
 * gateway's secret. It trusts the gateway for who may see what; it holds no policy of its own.
 */
export function createApp(opts: PhonebankOptions): Hono<PhonebankEnv> {
  const members = opts.members ?? createMemberDirectory();
  const deps: PhonebankDeps = {
    members,
    calls: new CallStore({ members, maxCalls: opts.maxCalls }),
    clock: opts.clock ?? systemClock,
  };

  const app = new Hono<PhonebankEnv>();

  app.use("*", async (c, next) => {
    c.set("deps", deps);
    await next();
    // Member data must not be cached or sniffed, whatever route answered.
    c.header("cache-control", "no-store");
    c.header("x-content-type-options", "nosniff");
    c.header("referrer-policy", "no-referrer");
  });
  app.use("*", requireGateway({ secret: opts.secret, exempt: ["/healthz", "/readyz"] }));

  registerHealth(app);
  registerPage(app);
  registerCalls(app);
  registerMembers(app);

  app.notFound((c) => jsonError(c, 404, "not_found", "No such route."));
  app.onError((_err, c) => jsonError(c, 500, "internal", "Something went wrong."));
  return app;
}
