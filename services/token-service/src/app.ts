import { OpenAPIHono } from "@hono/zod-openapi";
import { metricsAnswer, missingSecurityHeaders, routeLogPath, viaHttps } from "@phaselock/core";
import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import { routePath } from "hono/route";
import { secureHeaders } from "hono/secure-headers";
import { isConsoleCall } from "./console/api.ts";
import { registerConsole } from "./console/index.tsx";
import { ConsoleSessions } from "./console/sessions.ts";
import type { AppEnv, TokenServiceDeps } from "./context.ts";
import { fail, notFound, onError, validationHook } from "./errors.ts";
import { requestId } from "./middleware/request-id.ts";
import { strictQuery } from "./middleware/strict-query.ts";
import { registerApiKeys } from "./routes/api-keys.ts";
import { registerAudit } from "./routes/audit.ts";
import { registerCampaigns } from "./routes/campaigns.ts";
import { registerContests } from "./routes/contests.ts";
import { registerKeys } from "./routes/keys.ts";
import { registerLinks } from "./routes/links.ts";
import { registerMeta } from "./routes/meta.ts";
import { registerReports } from "./routes/reports.ts";
import { registerRevocations } from "./routes/revocations.ts";

/** Request bodies of every route but the batch: a contest timeline is the largest, a few KiB. */
export const MAX_BODY_BYTES = 64 * 1024;
/**
 * A batch of 10,000 volunteers with the longest refs (128) and names (100) is about 2.5 MB of
 * JSON; 4 MiB leaves room for escaped characters.
 */
export const MAX_BATCH_BODY_BYTES = 4 * 1024 * 1024;

const tooLarge = (limit: number) =>
  bodyLimit({
    maxSize: limit,
    onError: () => fail("payload_too_large", `The request body exceeds ${limit} bytes.`),
  });

export interface AppOptions {
  /** The console's sign-ins (default: in this app's memory, with the default expiries). */
  consoleSessions?: ConsoleSessions;
}

/** The token service's HTTP app. Holds no state of its own but the console's sign-ins. */
export function createApp(deps: TokenServiceDeps, opts: AppOptions = {}): OpenAPIHono<AppEnv> {
  if (deps.config.adminToken.length < 32)
    throw new Error("createApp: adminToken must be at least 32 characters");
  if (!deps.config.issuer || !deps.config.publicGatewayUrl) {
    throw new Error("createApp: issuer and publicGatewayUrl are required");
  }
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

  app.use(requestId());
  app.use(async (c, next) => {
    c.set("deps", deps);
    await next();
  });
  // One line per request and its latency. The metric is by route pattern (a path may hold an id);
  // the line's path is masked by the routes registered below (log-path.ts): no value of a
  // parameter that is not an identifier, nothing of a path no route matches.
  const logPath = routeLogPath(app);
  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    const route = routePath(c, -1);
    deps.metrics?.request(c.req.method, route, c.res.status, seconds);
    // One line per request at info: a console page's own API calls are part of its request.
    const line = isConsoleCall(c.env) ? "debug" : "info";
    deps.requestLogger?.[line](
      {
        method: c.req.method,
        route,
        path: logPath(c.req.url),
        status: c.res.status,
        ms: Math.round(seconds * 10_000) / 10,
        requestId: c.get("requestId"),
      },
      "request",
    );
  });
  // HSTS is ours (behind HTTPS only); CSP is each page's, completed below.
  app.use(
    secureHeaders({
      crossOriginResourcePolicy: "same-origin",
      xFrameOptions: "DENY",
      strictTransportSecurity: false,
      contentSecurityPolicy: undefined,
    }),
  );
  app.use(async (c, next) => {
    await next();
    const res = c.res.headers;
    const https = viaHttps(c.req.url, c.req.header("x-forwarded-proto"));
    for (const [name, value] of missingSecurityHeaders((n) => res.get(n), https)) c.header(name, value);
  });

  // Answers carry tokens, keys and policy: no cache may keep them.
  app.use(
    "/v1/*",
    createMiddleware<AppEnv>(async (c, next) => {
      await next();
      c.header("Cache-Control", "no-store");
    }),
  );
  const batchLimit = tooLarge(MAX_BATCH_BODY_BYTES);
  const defaultLimit = tooLarge(MAX_BODY_BYTES);
  app.use("/v1/*", (c, next) => (c.req.path === "/v1/links/batch" ? batchLimit : defaultLimit)(c, next));
  // Every write is audited: when the audit trail cannot be written, refuse rather than act unrecorded.
  app.use(
    "/v1/*",
    createMiddleware<AppEnv>(async (c, next) => {
      if (c.req.method !== "GET" && c.req.method !== "HEAD" && !deps.audit.healthy(deps.clock.now())) {
        fail("unavailable", "The audit trail cannot be written; try again shortly.");
      }
      await next();
    }),
  );

  // Unknown query parameters are refused on every route, by what each declares in the document.
  app.use(strictQuery(app));

  // Operators' scrape, behind METRICS_TOKEN when set; documented (it takes no query) as the
  // gateway's is.
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/metrics",
    tags: ["operations"],
    summary: "Prometheus metrics (request latency by route, links issued, audit checkpoint and queue)",
    description: "With METRICS_TOKEN set, requires `Authorization: Bearer <METRICS_TOKEN>`.",
    responses: {
      200: { description: "Prometheus text exposition format", content: { "text/plain": { schema: {} } } },
      401: { description: "`unauthorized` (problem+json): METRICS_TOKEN is set and was not presented" },
      404: { description: "`not_found`: this instance keeps no metrics" },
    },
  });
  app.get("/metrics", async (c) => {
    if (!deps.metrics) return notFound(c);
    const out = await metricsAnswer(
      deps.metrics.registry,
      c.req.header("authorization"),
      deps.metricsToken,
      c.get("requestId"),
    );
    return c.body(out.body, out.status as 200, out.headers);
  });

  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "`ADMIN_TOKEN`, or an API key (`plk_…`) from `POST /v1/api-keys`",
  });

  registerContests(app);
  registerCampaigns(app);
  registerApiKeys(app);
  registerLinks(app);
  registerRevocations(app);
  registerKeys(app);
  registerAudit(app);
  registerReports(app);
  registerMeta(app);
  registerConsole(app, opts.consoleSessions ?? new ConsoleSessions({ clock: deps.clock }));

  app.onError(onError);
  app.notFound(notFound);
  return app;
}
