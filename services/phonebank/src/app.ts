import { randomUUID } from "node:crypto";
import {
  type Clock,
  createMetricsRegistry,
  methodLabel,
  metricsAnswer,
  missingSecurityHeaders,
  type PinoLogger,
  type Registry,
  requestDurationHistogram,
  routeLogPath,
  statusClass,
  systemClock,
  viaHttps,
} from "@phaselock/core";
import { Hono } from "hono";
import { routePath } from "hono/route";
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
  /** METRICS_TOKEN: the bearer `GET /metrics` requires, when set */
  metricsToken?: string | undefined;
  /** Where `/metrics` reads from. Default: a registry of this app's own. */
  metricsRegistry?: Registry;
  /** One JSON line per request. Default: none. */
  logger?: PinoLogger;
}

const SANE_ID = /^[A-Za-z0-9._:-]{8,128}$/;

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

  const registry = opts.metricsRegistry ?? createMetricsRegistry("phonebank");
  const duration = requestDurationHistogram(registry, "phaselock_phonebank");
  const app = new Hono<PhonebankEnv>();
  // The line's path is masked by the routes registered below (log-path.ts).
  const logPath = routeLogPath(app);

  app.use("*", async (c, next) => {
    const started = performance.now();
    c.set("deps", deps);
    await next();
    // Member data must not be cached or sniffed, whatever route answered; pages get their CSP.
    c.header("cache-control", "no-store");
    c.header("referrer-policy", "no-referrer");
    const res = c.res.headers;
    const https = viaHttps(c.req.url, c.req.header("x-forwarded-proto"));
    for (const [name, value] of missingSecurityHeaders((n) => res.get(n), https)) c.header(name, value);
    const seconds = (performance.now() - started) / 1000;
    const route = routePath(c, -1);
    duration.observe(
      { method: methodLabel(c.req.method), route, status_class: statusClass(c.res.status) },
      seconds,
    );
    if (opts.logger) {
      const incoming = c.req.header("x-request-id");
      opts.logger.info(
        {
          method: c.req.method,
          route,
          path: logPath(c.req.url),
          status: c.res.status,
          ms: Math.round(seconds * 10_000) / 10,
          requestId: incoming && SANE_ID.test(incoming) ? incoming : `req_${randomUUID()}`,
        },
        "request",
      );
    }
  });
  // Scraped directly, not through the gateway: METRICS_TOKEN guards it instead of the secret.
  app.get("/metrics", async (c) => {
    const incoming = c.req.header("x-request-id");
    const out = await metricsAnswer(
      registry,
      c.req.header("authorization"),
      opts.metricsToken,
      incoming && SANE_ID.test(incoming) ? incoming : `req_${randomUUID()}`,
    );
    return c.body(out.body, out.status as 200, out.headers);
  });
  app.use("*", requireGateway({ secret: opts.secret, exempt: ["/healthz", "/readyz", "/metrics"] }));

  registerHealth(app);
  registerPage(app);
  registerCalls(app);
  registerMembers(app);

  app.notFound((c) => jsonError(c, 404, "not_found", "No such route."));
  app.onError((_err, c) => jsonError(c, 500, "internal", "Something went wrong."));
  return app;
}
