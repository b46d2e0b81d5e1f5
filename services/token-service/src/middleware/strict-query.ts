import type { OpenAPIHono } from "@hono/zod-openapi";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../context.ts";
import { fail, type ProblemIssue } from "../errors.ts";

/** What one route accepts in its query, read from the OpenAPI document. */
interface QueryRule {
  method: string;
  pattern: RegExp;
  /** Path parameters: fewer wins when two templates match (`/v1/links/batch` over `/v1/links/{id}`). */
  templated: number;
  params: Set<string>;
  /** Parameters declared as arrays: only these may repeat. */
  repeatable: Set<string>;
}

interface OpenApiDoc {
  paths?: Record<
    string,
    Record<string, { parameters?: { name: string; in: string; schema?: { type?: unknown } }[] }>
  >;
}

const METHODS = new Set(["get", "put", "post", "delete", "patch"]);

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function compile(doc: OpenApiDoc): QueryRule[] {
  const rules: QueryRule[] = [];
  const add = (method: string, path: string, params: { name: string; array: boolean }[]) => {
    const parts = path.split(/\{[^}]+\}/);
    rules.push({
      method: method.toUpperCase(),
      pattern: new RegExp(`^${parts.map(escapeRegExp).join("[^/]+")}$`),
      templated: parts.length - 1,
      params: new Set(params.map((p) => p.name)),
      repeatable: new Set(params.filter((p) => p.array).map((p) => p.name)),
    });
  };
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.has(method)) continue;
      const query = (op.parameters ?? []).filter((p) => p.in === "query");
      add(
        method,
        path,
        query.map((p) => ({ name: p.name, array: p.schema?.type === "array" })),
      );
    }
  }
  return rules.sort((a, b) => a.templated - b.templated);
}

/** The console's pages: for people, exempt from the rule (see {@link strictQuery}). */
const isConsolePath = (path: string): boolean => path === "/console" || path.startsWith("/console/");

interface DocOperation {
  responses?: Record<string, unknown>;
}

/**
 * The rule's answer in the document: every operation it covers (all but the console's) can answer
 * 400 `validation` for a parameter it does not take, so each lists 400 — also those that take no
 * query and no body (`/healthz`, `POST /v1/keys/rotate`), which would otherwise say they never do.
 * Applied to the served document (routes/meta.ts), so a new route cannot leave it out.
 */
export function documentQueryRefusals<D extends { paths?: object }>(doc: D): D {
  for (const [path, item] of Object.entries(
    (doc.paths ?? {}) as Record<string, Record<string, DocOperation>>,
  )) {
    if (isConsolePath(path)) continue;
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.has(method) || op.responses === undefined || op.responses["400"] !== undefined) continue;
      op.responses["400"] = {
        description: "`validation`: a query parameter this route does not take",
        content: { "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } } },
      };
    }
  }
  return doc;
}

// A parameter name is echoed only when it is plainly a name: never what may be a pasted secret.
const SAFE_NAME = /^[A-Za-z][A-Za-z0-9_.[\]-]{0,39}$/;
export const queryPointer = (name: string): string => (SAFE_NAME.test(name) ? `#/${name}` : "#");

/**
 * Refuses, with 400 `validation`, a query parameter the route does not declare in the OpenAPI
 * document (and a declared one given twice, unless it is an array), on every documented route
 * (`GET /metrics` too, which takes none). One rule for all routes, so a filter
 * mistyped by a user (`?phase=` on a route without it) never silently widens an answer. Unknown
 * values of declared parameters are each route's zod schema's to refuse. Undocumented routes,
 * and the console's pages (documented or not: they are for people, whose browser may add
 * `?utm_source=…` to a shared link, and a JSON problem is no page), are left to their own checks.
 * The table is read from `app` on the first request, once every route is registered.
 */
export function strictQuery(app: OpenAPIHono<AppEnv>) {
  let rules: QueryRule[] | null = null;
  return createMiddleware<AppEnv>(async (c, next) => {
    rules ??= compile(
      app.getOpenAPI31Document({ openapi: "3.1.0", info: { title: "routes", version: "0" } }) as OpenApiDoc,
    );
    const method = c.req.method === "HEAD" ? "GET" : c.req.method;
    const path = c.req.path;
    if (isConsolePath(path)) return next();
    const rule = rules.find((r) => r.method === method && r.pattern.test(path));
    const url = c.req.url;
    const q = url.indexOf("?");
    if (rule && q !== -1 && q < url.length - 1) {
      const seen = new Set<string>();
      const issues: ProblemIssue[] = [];
      for (const name of new URLSearchParams(url.slice(q + 1)).keys()) {
        if (!rule.params.has(name)) {
          const known = [...rule.params];
          issues.push({
            in: "query",
            pointer: queryPointer(name),
            detail: `unknown query parameter${SAFE_NAME.test(name) ? ` "${name}"` : ""}; this route takes ${
              known.length > 0 ? known.join(", ") : "none"
            }`,
          });
        } else if (seen.has(name) && !rule.repeatable.has(name)) {
          issues.push({ in: "query", pointer: queryPointer(name), detail: "given more than once" });
        }
        seen.add(name);
        if (issues.length >= 20) break;
      }
      if (issues.length > 0) {
        fail("validation", "The query holds parameters this route does not take; see `errors`.", { issues });
      }
    }
    await next();
  });
}
