import type { Hono } from "hono";
import { type GatewayEnv, ipHash } from "../app.ts";
import type { CompiledResponseRule } from "../minimise.ts";
import { normalizePath } from "../paths.ts";
import { refusal } from "../refusals.ts";
import { UpstreamError } from "../upstream.ts";
import { clientIp, requestToken, sendRefusal } from "./landing.ts";

/** Request headers never sent upstream: credentials, and anything claiming to be ours. */
const DROP_REQUEST = new Set([
  "cookie",
  "authorization",
  "host",
  "content-length",
  "x-phaselock-gateway-secret",
]);

export function registerProxy(app: Hono<GatewayEnv>) {
  app.all("/pb", (c) => c.redirect("/pb/", 308));
  app.all("/pb/*", async (c) => {
    const deps = c.var.deps;
    const raw = rawPath(c);
    const normalized = normalizePath(raw);
    const requiredScope = normalized.ok ? deps.routeScopes(c.req.method, normalized.path) : null;
    const outcome = await c.var.gatekeeper.check(requestToken(c), requiredScope);
    const now = deps.clock.now();
    const route = normalized.ok ? `${c.req.method} ${normalized.path}` : `${c.req.method} (malformed path)`;
    const audit = (decision: "allow" | "deny", reason: string | null, extra: Record<string, unknown> = {}) =>
      deps.audit.record({
        type: "access",
        at: now,
        actor: outcome.claims?.sub ?? null,
        campaignId: outcome.claims?.cmp ?? null,
        linkId: outcome.claims?.jti ?? null,
        decision,
        reason,
        data: { route, ipHash: ipHash(deps, clientIp(c)), ...extra },
      });

    if (!outcome.ok) {
      audit("deny", outcome.refusal.code);
      return sendRefusal(c, outcome.refusal);
    }
    if (!deps.audit.healthy(now)) {
      // Fail closed: never serve member data that cannot be audited.
      return sendRefusal(c, refusal("unavailable"));
    }
    const { claims, campaign } = outcome;
    deps.seen(claims.jti, now);
    let limited: Awaited<ReturnType<typeof deps.limits.request>>;
    try {
      limited = await deps.limits.request(claims, campaign, now);
    } catch {
      limited = refusal("unavailable");
    }
    if (limited) {
      audit("deny", limited.code);
      return sendRefusal(c, limited);
    }
    if (!normalized.ok) return sendRefusal(c, refusal("scope_denied")); // unreachable: scope null denies

    const headers = new Headers();
    const connectionTokens = (c.req.header("connection") ?? "")
      .toLowerCase()
      .split(",")
      .map((s) => s.trim());
    c.req.raw.headers.forEach((value, name) => {
      const n = name.toLowerCase();
      if (DROP_REQUEST.has(n) || n.startsWith("x-phaselock-") || connectionTokens.includes(n)) return;
      headers.set(name, value);
    });
    headers.set("x-phaselock-campaign", claims.cmp);
    headers.set("x-phaselock-volunteer", claims.sub);
    headers.set("x-phaselock-link", claims.jti);
    headers.set("x-phaselock-scopes", claims.scp.join(" "));
    headers.set("x-phaselock-gateway-secret", deps.config.upstreamSecret);
    headers.set("x-request-id", c.get("requestId"));

    const declared = Number(c.req.header("content-length") ?? "0");
    if (declared > deps.config.maxBodyBytes) {
      audit("deny", "payload_too_large");
      return sendRefusal(c, refusal("payload_too_large"));
    }
    const hasBody = c.req.method !== "GET" && c.req.method !== "HEAD";
    try {
      const res = await deps.upstream.forward({
        method: c.req.method,
        path: normalized.path + normalized.query,
        headers,
        body: hasBody ? c.req.raw.body : null,
      });
      const out = new Headers(res.headers);
      out.delete("set-cookie");
      if (!out.has("cache-control")) out.set("cache-control", "no-store");
      out.set("referrer-policy", "no-referrer");
      out.set("x-request-id", c.get("requestId"));
      const rule = deps.responseFilter(c.req.method, normalized.path);
      if (!rule) {
        audit("allow", null, { status: res.status });
        return new Response(res.body, { status: res.status, headers: out });
      }
      // A listed route: the volunteer gets only the allow-listed fields, and each member record
      // counts against the link's quota before it is shown.
      const filtered = await minimise(res, rule);
      if (filtered.recordId !== null) {
        let quota: Awaited<ReturnType<typeof deps.limits.admitRecord>>;
        try {
          quota = await deps.limits.admitRecord(claims, campaign, filtered.recordId, now);
        } catch {
          quota = refusal("unavailable");
        }
        if (quota) {
          audit("deny", quota.code, { status: res.status });
          return sendRefusal(c, quota);
        }
      }
      audit("allow", null, { status: res.status, record: filtered.recordId });
      out.delete("content-length");
      out.delete("content-encoding");
      out.set("content-type", filtered.contentType);
      return new Response(filtered.body, { status: res.status, headers: out });
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      if (err.code === "body_too_large") {
        audit("deny", "payload_too_large");
        return sendRefusal(c, refusal("payload_too_large"));
      }
      audit("deny", "upstream_error", { upstream: err.code });
      return sendRefusal(c, refusal("upstream_error", undefined, err.status));
    }
  });
}

/** Rebuilds a JSON response from its allow-list; anything that is not JSON is replaced by `{}`. */
async function minimise(
  res: Response,
  rule: CompiledResponseRule,
): Promise<{ body: string; recordId: string | null; contentType: string }> {
  const type = res.headers.get("content-type") ?? "";
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = type.includes("json") ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  const { body, recordId } = rule.apply(parsed);
  return { body: JSON.stringify(body), recordId, contentType: "application/json; charset=utf-8" };
}

/** The path as the client sent it: checks run on the raw string, before any URL normalisation. */
function rawPath(c: { env: unknown; req: { url: string } }): string {
  const incoming = (c.env as { incoming?: { url?: string } } | undefined)?.incoming?.url;
  if (incoming) return incoming;
  const u = new URL(c.req.url);
  return u.pathname + u.search;
}
