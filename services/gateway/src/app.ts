import { metricsAnswer, missingSecurityHeaders } from "@phaselock/core";
import { Hono } from "hono";
import { answerHeaders } from "./answer-headers.ts";
import type { GatewayDeps, GatewayEnv } from "./deps.ts";
import { gatewayOpenApi } from "./openapi.ts";
import { createProxy } from "./proxy-core.ts";
import { refusal } from "./refusals.ts";
import { isHttps, requestIdFor } from "./request-context.ts";
import { logFailure } from "./request-log.ts";
import { registerLanding } from "./routes/landing.ts";
import { registerProxy } from "./routes/proxy.ts";
import { sendRefusal } from "./routes/refusal.ts";
import { registerSession } from "./routes/session.ts";

/** The gateway's router on Hono. The checks and the proxy live in checks.ts and proxy-core.ts. */
export function createApp(deps: GatewayDeps) {
  const app = new Hono<GatewayEnv>();

  app.use(async (c, next) => {
    const requestId = requestIdFor(c.req.header("x-request-id"));
    c.set("deps", deps);
    c.set("requestId", requestId);
    await next();
    // Proxied answers and refusals already carry them. Setting a header on a finished response
    // makes Hono rebuild it (a native Response, the body as a stream, a copy of the headers):
    // about an eighth of the CPU of a proxied request (pnpm bench). Only set what is not ours yet.
    for (const [name, value] of answerHeaders(requestId)) {
      if (c.res.headers.get(name) !== value) c.header(name, value);
    }
    // nosniff everywhere; on pages a CSP with frame-ancestors 'none'; HSTS behind HTTPS
    // (SECURE_COOKIES, or the request came over it). Only what is missing: see above.
    const res = c.res.headers;
    for (const [name, value] of missingSecurityHeaders((n) => res.get(n), isHttps(c))) c.header(name, value);
    // A landing page shown or a session opened is an allowed decision; refusals count themselves.
    if (c.req.path.startsWith("/l/") && c.res.status < 400) deps.metrics?.decision(null);
  });

  // Not proxied, not audited: operators' scrape, behind METRICS_TOKEN when set.
  app.get("/metrics", async (c) => {
    if (!deps.metrics) return c.json({ error: { code: "not_found", message: "No such route." } }, 404);
    const out = await metricsAnswer(
      deps.metrics.registry,
      c.req.header("authorization"),
      deps.config.metricsToken,
      c.get("requestId"),
    );
    return c.body(out.body, out.status as 200, out.headers);
  });

  app.get("/healthz", (c) => c.json({ ok: true }));
  app.get("/openapi.json", (c) => c.json(gatewayOpenApi));
  app.get("/readyz", async (c) => {
    const fresh = deps.policy.isFresh(deps.clock.now());
    const reachable = deps.ready ? await deps.ready().catch(() => false) : true;
    const ok = fresh && reachable && deps.audit.healthy(deps.clock.now());
    return c.json({ ok, fresh, reachable }, ok ? 200 : 503);
  });

  registerLanding(app);
  registerSession(app);
  registerProxy(app, createProxy(deps));

  app.notFound((c) => c.json({ error: { code: "not_found", message: "No such route." } }, 404));
  app.onError((err, c) => {
    // A check that could not be made (database or store unreachable, or a bug) must not let a
    // request through or read as a verdict on the link: fail closed with `unavailable`. Never
    // echo the error: it might quote a header.
    logFailure(
      deps,
      `${err.name} while answering a ${c.req.method} request; refused as unavailable`,
      c.get("requestId"),
    );
    return sendRefusal(c, refusal("unavailable"));
  });
  return app;
}

export type GatewayApp = ReturnType<typeof createApp>;
