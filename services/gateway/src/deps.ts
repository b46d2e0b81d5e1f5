import type { AuditSink } from "@phaselock/audit";
import type { Clock } from "@phaselock/core";
import type { LinkClaims, PolicySnapshot, RevocationIndex } from "@phaselock/policy";
import type { Limits } from "./limits.ts";
import type { Upstream } from "./upstream.ts";
import type { UpstreamRoutes } from "./upstream-routes.ts";

// The gateway's shared types. Everything imports this module and it imports none of the modules
// that build on it, so the layout has no cycle (`pnpm lint` checks).

/** The gateway's in-memory view of policy state, kept current by the change feed. */
export interface PolicyView {
  snapshot(): PolicySnapshot;
  revocations(): RevocationIndex;
  /** false when the feed has not been confirmed recently: every check then fails closed */
  isFresh(now: Date): boolean;
}

export type VerifyOutcome =
  | { ok: true; claims: LinkClaims }
  | { ok: false; reason: "token_invalid" | "expired" | "not_yet_valid"; claims?: LinkClaims | undefined };

export interface TokenVerifier {
  verify(token: string): Promise<VerifyOutcome>;
}

/** The subset of the links repository the gateway needs (redemption and the landing page). */
export interface LinkStore {
  get(id: string): Promise<{ uses: number; maxUses: number; suspendedAt: Date | null } | null>;
  redeem(
    id: string,
    now: Date,
  ): Promise<
    { ok: true; uses: number } | { ok: false; reason: "uses_exhausted" | "suspended" | "not_found" }
  >;
}

export interface GatewayConfig {
  /** secret the phone bank requires on every request (X-Phaselock-Gateway-Secret) */
  upstreamSecret: string;
  /** mark the session cookie Secure (also set when the request arrived over HTTPS) */
  secureCookies: boolean;
  /** request bodies toward the upstream are refused past this size */
  maxBodyBytes: number;
  /** keyed hash of client IPs in the audit trail (never the clear IP) */
  ipHashKey: string;
  /** a link redeemed from more distinct devices than this is suspended automatically */
  maxDevicesPerLink: number;
  /**
   * Peers (IPs and CIDRs) whose `X-Forwarded-For` is believed (forwarding.ts). Default none: the
   * socket's peer is the client.
   */
  trustedProxies?: readonly string[] | undefined;
  /** a request body not received whole within this is refused `408` (default 10 s) */
  bodyTimeoutMs?: number | undefined;
  /** upstream requests one link may have in flight at once; beyond, `429` (default 8) */
  maxConcurrentPerLink?: number | undefined;
}

export interface GatewayDeps {
  clock: Clock;
  policy: PolicyView;
  verifier: TokenVerifier;
  links: LinkStore;
  upstream: Upstream;
  /** the upstream route table: each route's scope and response rule */
  routes: UpstreamRoutes;
  audit: AuditSink;
  limits: Limits;
  config: GatewayConfig;
  /** Notes that a link was used now ("last seen"), written in the background. */
  seen(linkId: string, at: Date): void;
  /** Suspends a link everywhere (stored, announced on the change feed, applied locally). */
  suspendLink(linkId: string, reason: string, now: Date): Promise<void>;
  /** readiness probe of the database and store, for /readyz */
  ready?: (() => Promise<boolean>) | undefined;
}

export type GatewayEnv = {
  Variables: { deps: GatewayDeps; requestId: string };
};
