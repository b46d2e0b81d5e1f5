import type { AuditSink } from "@phaselock/audit";
import type { Clock, PinoLogger, Scope } from "@phaselock/core";
import type { RedeemOpen } from "@phaselock/db";
import type { LinkClaims, PolicySnapshot, RevocationIndex } from "@phaselock/policy";
import type { Limits } from "./limits.ts";
import type { GatewayMetrics } from "./metrics.ts";
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

/** A stored link: every claim of its token, so a session or short link is checked like one. */
export interface LinkRecord {
  id: string;
  campaignId: string;
  contestId: string;
  phase: string;
  volunteerRef: string;
  scopes: readonly Scope[];
  notBefore: Date;
  expiresAt: Date;
  issuedAt: Date;
  kid: string;
}

/** The subset of the links repository the gateway needs (redemption and the landing page). */
export interface LinkStore {
  /** `kid`: the key that signed the link's token; a token signed by any other is not this link */
  get(id: string): Promise<{ uses: number; maxUses: number; suspendedAt: Date | null; kid: string } | null>;
  /** a short link's link, by `sha256(code)` */
  getByCodeHash(codeHash: string): Promise<LinkRecord | null>;
  /**
   * Counts one use and opens `open.session`, in one transaction, unless the link's sessions came
   * from `open.maxDevices` (when set) other devices already (`too_many_devices`, nothing written).
   */
  redeem(
    id: string,
    now: Date,
    open: RedeemOpen,
  ): Promise<
    | { ok: true; uses: number }
    | { ok: false; reason: "uses_exhausted" | "suspended" | "not_found" | "too_many_devices" }
    | { ok: false; reason: "live_session"; session: { id: string; expiresAt: Date } }
  >;
}

export interface SessionRecord {
  id: string;
  linkId: string;
  deviceId: string;
  expiresAt: Date;
  endedAt: Date | null;
}

export interface ResolvedSession {
  session: SessionRecord;
  link: LinkRecord;
}

/**
 * The sessions table (credentials by their sha256 only); `resolve` is cached by the gateway. A
 * session is opened only by `LinkStore.redeem`, in the transaction that counts its use.
 */
export interface SessionStore {
  resolve(tokenHash: string): Promise<ResolvedSession | null>;
  findLive(linkId: string, deviceId: string, now: Date): Promise<SessionRecord | null>;
  rotate(id: string, tokenHash: string, now: Date): Promise<boolean>;
  end(tokenHash: string, reason: string, now: Date): Promise<{ id: string; version: number } | null>;
}

/**
 * Device ids issued and authenticated by the gateway (sessions.ts): a value a client invents
 * counts as no device at all.
 */
export interface DeviceIds {
  issue(): string;
  /** the device id of a cookie value, or null when it is not one we issued */
  verify(value: string | undefined): string | null;
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
  /**
   * a link redeemed from more distinct devices than this is suspended automatically; undefined:
   * no bound but the link's `maxUses` (every new device spends a use)
   */
  maxDevicesPerLink: number | undefined;
  /**
   * Peers (IPs and CIDRs) whose `X-Forwarded-For` is believed (forwarding.ts). Default none: the
   * socket's peer is the client.
   */
  trustedProxies?: readonly string[] | undefined;
  /** a request body not received whole within this is refused `408` (default 10 s) */
  bodyTimeoutMs?: number | undefined;
  /** upstream requests one link may have in flight at once; beyond, `429` (default 8) */
  maxConcurrentPerLink?: number | undefined;
  /** longest life of a session (never past its link's `exp`); default 43200 (SESSION_TTL_SECONDS) */
  sessionTtlSeconds?: number | undefined;
  /** PUBLIC_GATEWAY_URL: its origin is the one redemptions may be posted from */
  publicGatewayUrl?: string | undefined;
  /** METRICS_TOKEN: the bearer `GET /metrics` requires, when set */
  metricsToken?: string | undefined;
}

export interface GatewayDeps {
  clock: Clock;
  policy: PolicyView;
  verifier: TokenVerifier;
  links: LinkStore;
  /** sessions, `resolve` served from the gateway's cache */
  sessions: SessionStore;
  /** Ends a session everywhere (stored, announced on the change feed, dropped locally). */
  endSession(tokenHash: string, now: Date): Promise<boolean>;
  devices: DeviceIds;
  /** whether a signing key is still known (published, not revoked): a session of its link dies with it */
  keyKnown(kid: string): boolean;
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
  /** counters and histograms behind `/metrics` (metrics.ts); absent in hand-built test deps */
  metrics?: GatewayMetrics | undefined;
  /** one JSON line per request (node-handler.ts) */
  logger?: PinoLogger | undefined;
}

export type GatewayEnv = {
  Variables: { deps: GatewayDeps; requestId: string };
};
