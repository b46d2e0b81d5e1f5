import { isScope, type Scope } from "@phaselock/core";
import { type AllowList, type CompiledResponseRule, compileAllowList } from "./minimise.ts";
import { createRouteMatcher } from "./route-matcher.ts";

/**
 * One upstream route: the scope a link needs to call it and what of its answer a volunteer sees.
 * `response` is required, so a route cannot be added without deciding it: an allow-list, or
 * `"passthrough"` for an answer relayed as the upstream sent it (a page, a write's receipt).
 * `pattern` is a path with literal and `:param` segments, e.g. `/members/:id`.
 */
export interface UpstreamRoute {
  method: string;
  pattern: string;
  scope: Scope;
  response: AllowList | "passthrough";
}

/** The demo phone bank's routes, as the public contract lists them. */
export const DEFAULT_UPSTREAM_ROUTES: readonly UpstreamRoute[] = [
  // The volunteer's calling page: HTML, which no JSON allow-list can rebuild.
  { method: "GET", pattern: "/", scope: "calls:read", response: "passthrough" },
  {
    method: "GET",
    pattern: "/calls/next",
    scope: "calls:read",
    response: {
      allow: [
        "call.id",
        "call.assignedAt",
        "call.member.id",
        "call.member.name",
        "call.member.phone",
        "call.member.ward",
        "call.member.constituency",
      ],
      recordId: "call.member.id",
      assignsRecord: true,
    },
  },
  // The phone bank's receipt of the volunteer's own outcome: no member data in it.
  { method: "POST", pattern: "/calls/:id/outcome", scope: "calls:write", response: "passthrough" },
  {
    method: "GET",
    pattern: "/members/:id",
    scope: "members:read",
    response: { allow: ["id", "name", "phone", "ward", "constituency"], recordId: "id" },
  },
  // The bulk export is NDJSON for an administrator's tooling; `members:export` is never issued
  // to a volunteer, so no volunteer's link reaches it.
  { method: "GET", pattern: "/members/export", scope: "members:export", response: "passthrough" },
];

/** What the gateway does for a matched route. `response` null: relay the answer unchanged. */
export interface ResolvedRoute {
  /** `METHOD /pattern` as the table lists it (e.g. `GET /members/:id`): what the audit stores. */
  pattern: string;
  scope: Scope;
  response: CompiledResponseRule | null;
}

/** Finds the route of a (method, normalised path), or `null` for an unmapped route (deny). */
export type UpstreamRoutes = (method: string, path: string) => ResolvedRoute | null;

/**
 * Builds the route table's matcher (matching as `createRouteMatcher`; default deny). Throws when a
 * route is malformed, names an unknown scope, has no response rule, or two routes have the same
 * method and shape: a bug in config.
 */
export function createUpstreamRoutes(
  routes: readonly UpstreamRoute[] = DEFAULT_UPSTREAM_ROUTES,
): UpstreamRoutes {
  const entries = routes.map((r) => {
    const where = `${r.method} ${r.pattern}`;
    if (!isScope(r.scope)) throw new Error(`Route rule has an unknown scope: ${where}`);
    if (r.response !== "passthrough" && !Array.isArray(r.response?.allow)) {
      throw new Error(`Route rule needs a response rule (an allow-list or "passthrough"): ${where}`);
    }
    const response = r.response === "passthrough" ? null : compileAllowList(r.response);
    return { method: r.method, pattern: r.pattern, value: { pattern: where, scope: r.scope, response } };
  });
  return createRouteMatcher(entries);
}
