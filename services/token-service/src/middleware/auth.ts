import { safeEqual } from "@phaselock/core";
import { createMiddleware } from "hono/factory";
import type { AppEnv, Principal, Role, TokenServiceDeps } from "../context.ts";
import { fail } from "../errors.ts";

export const ROLES = ["admin", "coordinator", "auditor"] as const satisfies readonly Role[];

// Visible ASCII, bounded: anything longer is not a credential we ever hand out or accept as ADMIN_TOKEN.
const BEARER = /^Bearer +([\x21-\x7e]{1,1024})$/i;

export interface AuthOptions {
  /** Roles allowed through; the rest get 403 `forbidden`. */
  roles: readonly Role[];
}

/**
 * Bearer authentication: `ADMIN_TOKEN` (compared in constant time) or an API key looked up by
 * its hash. Sets `principal`. Missing or unknown credentials are 401 `unauthorized`; a known
 * credential whose role is not in `roles` is 403 `forbidden`.
 */
export function auth(opts: AuthOptions) {
  if (opts.roles.length === 0) throw new Error("auth() needs at least one role");
  for (const r of opts.roles) if (!ROLES.includes(r)) throw new Error(`auth(): unknown role ${r}`);
  const allowed = new Set<Role>(opts.roles);
  return createMiddleware<AppEnv>(async (c, next) => {
    const header = c.req.header("authorization");
    const match = header ? BEARER.exec(header.trim()) : null;
    if (!match) fail("unauthorized", "Send `Authorization: Bearer <admin token or API key>`.");
    const { deps } = c.var;
    const principal = await authenticate(deps, match[1]!);
    // An API key's actor is its id; the admin token has no row to stamp.
    if (principal && principal.actor !== "admin") await recordUse(deps, principal.actor);
    if (!principal) fail("unauthorized", "The bearer credential is not valid.");
    if (!allowed.has(principal.role))
      fail("forbidden", `This route is not open to the ${principal.role} role.`);
    c.set("principal", principal);
    await next();
  });
}

/**
 * Who a credential is: `ADMIN_TOKEN` (compared in constant time) or an active API key, by its
 * hash; null when it is neither. The one rule the API and the console's sign-in share.
 */
export async function authenticate(deps: TokenServiceDeps, secret: string): Promise<Principal | null> {
  if (safeEqual(secret, deps.config.adminToken)) return { role: "admin", actor: "admin", campaignId: null };
  const key = await deps.repos.apiKeys.findActiveByKey(secret);
  return key ? toPrincipal(key) : null;
}

/** `lastUsedAt` is a convenience: failing to write it never fails the request it describes. */
async function recordUse(deps: AppEnv["Variables"]["deps"], keyId: string): Promise<void> {
  try {
    await deps.repos.apiKeys.recordUse(keyId, deps.clock.now());
  } catch {
    deps.logger?.warn("api key last use not recorded", { keyId });
  }
}

function toPrincipal(key: { id: string; role: string; campaignId: string | null }): Principal | null {
  switch (key.role) {
    case "admin":
      return { role: "admin", actor: key.id, campaignId: null };
    case "auditor":
      return { role: "auditor", actor: key.id, campaignId: null };
    case "coordinator":
      // A coordinator key without a campaign would be bound to nothing: refuse it.
      return key.campaignId ? { role: "coordinator", actor: key.id, campaignId: key.campaignId } : null;
    default:
      return null;
  }
}

/**
 * Whether the principal may act on `campaignId`: admins on any, coordinators on their own only.
 * Auditors never reach a route that asks.
 */
export const canActOnCampaign = (p: Principal, campaignId: string): boolean =>
  p.role === "admin" || (p.role === "coordinator" && p.campaignId === campaignId);
