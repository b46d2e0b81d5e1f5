import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { sql } from "drizzle-orm";
import type { AppEnv, TokenServiceDeps } from "../context.ts";
import { DOCS_CSP, renderDocsPage } from "../docs-page.ts";
import { consoleLogger, fail, PROBLEM_CODES } from "../errors.ts";
import { documentQueryRefusals } from "../middleware/strict-query.ts";
import { addExamples } from "../openapi-examples.ts";
import { fixPatternFlags } from "../openapi-patterns.ts";
import { jsonContent, problems } from "../schemas.ts";

const READY_TIMEOUT_MS = 2000;

/** The OpenAPI document's fixed parts. */
export const openApiConfig = (issuer: string) => ({
  openapi: "3.1.0",
  info: {
    title: "Phaselock token service",
    version: "1.0.0",
    description:
      "Issues expiring, signed phone-bank links bound to one campaign, contest and phase, and administers contests, campaigns, entitlements, API keys, revocations and signing keys. Send `Authorization: Bearer <ADMIN_TOKEN or API key>`. Errors are RFC 9457 problem details with a stable `code`.",
  },
  servers: [{ url: issuer }],
});

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Why the service is not ready, or null when it is. */
async function notReady(deps: TokenServiceDeps): Promise<string | null> {
  try {
    await withTimeout(deps.db.execute(sql`select 1`), READY_TIMEOUT_MS);
  } catch (err) {
    (deps.logger ?? consoleLogger).warn("readiness: database unreachable", {
      error: err instanceof Error ? err.message : String(err),
    });
    return "database unreachable";
  }
  if (!deps.audit.healthy(deps.clock.now())) return "audit trail not being written";
  if (
    deps.ready &&
    !(await withTimeout(Promise.resolve(deps.ready()), READY_TIMEOUT_MS).catch(() => false))
  ) {
    return "change feed unreachable";
  }
  return null;
}

export function registerMeta(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/healthz",
      tags: ["operations"],
      summary: "Liveness",
      responses: { 200: jsonContent(z.object({ status: z.literal("ok") }), "The process is up") },
    }),
    (c) => c.json({ status: "ok" as const }, 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/readyz",
      tags: ["operations"],
      summary: "Readiness",
      description:
        "200 only when the database answers `select 1` (and the audit trail and change feed are healthy).",
      responses: {
        200: jsonContent(z.object({ status: z.literal("ready") }), "Ready"),
        ...problems([503, "`unavailable`: not ready"]),
      },
    }),
    async (c) => {
      const reason = await notReady(c.var.deps);
      if (reason) fail("unavailable", `Not ready: ${reason}.`);
      return c.json({ status: "ready" as const }, 200);
    },
  );

  // Built once, on first use (every route is registered by then), with its examples.
  let built: ReturnType<typeof app.getOpenAPI31Document> | null = null;
  const document = (issuer: string) => {
    built ??= addExamples(
      documentQueryRefusals(fixPatternFlags(app.getOpenAPI31Document(openApiConfig(issuer)))),
    );
    return built;
  };

  // Served by plain handlers (the console's by its own sub-app), listed here so the document
  // covers every route the contract names; the query rule applies to the first two as to the
  // rest (the console's pages are for browsers and exempt: middleware/strict-query.ts).
  const page = (description: string) => ({
    description,
    content: { "text/html": { schema: z.string() } },
  });
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/openapi.json",
    tags: ["operations"],
    summary: "This document",
    responses: { 200: jsonContent(z.record(z.string(), z.unknown()), "OpenAPI 3.1") },
  });
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/docs",
    tags: ["operations"],
    summary: "This document as an HTML reference",
    responses: { 200: page("The API reference") },
  });
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/console",
    tags: ["operations"],
    summary: "The console (for people, in a browser)",
    description:
      "The front door of the console: the sign-in form (`API key`, `Sign in`). Its other pages, under `/console/`, are forms for browsers, not API routes.",
    responses: {
      200: page("The sign-in form"),
      303: { description: "Signed in: to the home page of the key's role" },
    },
  });

  app.get("/openapi.json", (c) => c.json(document(c.var.deps.config.issuer)));

  app.get("/docs", (c) => {
    const doc = document(c.var.deps.config.issuer);
    c.header("Content-Security-Policy", DOCS_CSP);
    return c.html(renderDocsPage(doc as Parameters<typeof renderDocsPage>[0], PROBLEM_CODES));
  });
}
