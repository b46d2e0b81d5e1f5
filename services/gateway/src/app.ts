import type { AuditSink } from "@phaselock/audit";
import { type Clock, hmacHex, randomId } from "@phaselock/core";
import { Hono } from "hono";
import type { Gatekeeper, PolicyView, TokenVerifier } from "./gatekeeper.ts";
import { createGatekeeper } from "./gatekeeper.ts";
import type { Limits } from "./limits.ts";
import type { ResponseFilter } from "./minimise.ts";
import { gatewayOpenApi } from "./openapi.ts";
import { createProxy } from "./proxy-core.ts";
import { refusal } from "./refusals.ts";
import type { RouteScopes } from "./route-scopes.ts";
import { registerLanding, sendRefusal } from "./routes/landing.ts";
import { registerProxy } from "./routes/proxy.ts";
import type { Upstream } from "./upstream.ts";

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
}

export interface GatewayDeps {
  clock: Clock;
  policy: PolicyView;
  verifier: TokenVerifier;
  links: LinkStore;
  upstream: Upstream;
  routeScopes: RouteScopes;
  /** per-route JSON allow-lists applied to upstream responses */
  responseFilter: ResponseFilter;
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
  Variables: { deps: GatewayDeps; gatekeeper: Gatekeeper; requestId: string };
};

export const SESSION_COOKIE = "pl_session";
/** Identifies a volunteer's device across redemptions, to spot a link shared too widely. */
export const DEVICE_COOKIE = "pl_device";

/** Keyed hash of the client address: lets an auditor group requests without storing the IP. */
export const ipHash = (deps: GatewayDeps, ip: string | undefined): string | null =>
  ip ? hmacHex(deps.config.ipHashKey, ip).slice(0, 32) : null;

/** The client's `X-Request-Id` when it is a plain short token, else a fresh one. */
export function requestIdFor(incoming: string | undefined): string {
  return incoming && /^[A-Za-z0-9._-]{1,64}$/.test(incoming) ? incoming : randomId("req", 12);
}

export function createApp(deps: GatewayDeps) {
  const gatekeeper = createGatekeeper(deps);
  const app = new Hono<GatewayEnv>();

  app.use(async (c, next) => {
    const requestId = requestIdFor(c.req.header("x-request-id"));
    c.set("deps", deps);
    c.set("gatekeeper", gatekeeper);
    c.set("requestId", requestId);
    await next();
    // Proxied answers and refusals already carry it. Setting a header on a finished response makes
    // Hono rebuild it (a native Response, the body as a stream, a copy of the headers): about an
    // eighth of the CPU of a proxied request (pnpm bench). Only set it when it is not already ours.
    if (c.res.headers.get("x-request-id") !== requestId) c.header("X-Request-Id", requestId);
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
  registerProxy(app, createProxy(deps, gatekeeper));

  app.notFound((c) => c.json({ error: { code: "not_found", message: "No such route." } }, 404));
  app.onError((err, c) => {
    // A check that could not be made (database or store unreachable, or a bug) must not let a
    // request through or read as a verdict on the link: fail closed with `unavailable`. Never
    // echo the error: it might quote a header.
    console.error(`gateway: ${err.name} while answering a ${c.req.method} request; refused as unavailable`);
    return sendRefusal(c, refusal("unavailable"));
  });
  return app;
}

export type GatewayApp = ReturnType<typeof createApp>;
