import type { AuditSink } from "@phaselock/audit";
import type { Clock } from "@phaselock/core";
import {
  createRepos,
  currentPolicyVersion,
  type Db,
  loadPolicySnapshot,
  loadPublicKeys,
} from "@phaselock/db";
import { type ChangeBus, PolicyState, type RateLimiter, type RecordQuota } from "@phaselock/state";
import { createVerifier, KeyRing, VerifyCache } from "@phaselock/tokens";
import type { GatewayConfig, GatewayDeps, PolicyView } from "./deps.ts";
import { createLastSeen } from "./last-seen.ts";
import { createLimits, type LimitDefaults } from "./limits.ts";
import type { Upstream } from "./upstream.ts";
import { createUpstreamRoutes } from "./upstream-routes.ts";

export interface GatewayWiring {
  db: Db;
  bus: ChangeBus;
  clock: Clock;
  upstream: Upstream;
  audit: AuditSink;
  rateLimiter: RateLimiter;
  recordQuota: RecordQuota;
  /** the token service URL: tokens' `iss` */
  issuer: string;
  staleAfterMs: number;
  config: GatewayConfig;
  limitDefaults?: Partial<LimitDefaults>;
  ready?: () => Promise<boolean>;
  onError?: (err: unknown) => void;
}

/**
 * Builds a gateway's dependencies over a database and a change feed: the policy state (loaded,
 * then kept current by the feed), the key ring (re-read on every reload and patched by changes),
 * and a verifier with its cache. Call `start()` before serving.
 */
export function wireGateway(w: GatewayWiring) {
  const repos = createRepos(w.db);
  const ring = new KeyRing();
  const cache = new VerifyCache({ maxEntries: 100_000 });

  const state = new PolicyState({
    source: { load: () => loadPolicySnapshot(w.db) },
    bus: w.bus,
    clock: w.clock,
    staleAfterMs: w.staleAfterMs,
    onError: w.onError,
    refreshKeys: async () => ring.set(await loadPublicKeys(w.db, w.clock.now())),
    onChange: (change) => {
      if (change.type === "signing-key") void ring.add(change.kid, change.publicJwk);
    },
  });

  const policy: PolicyView = {
    snapshot: () => state.snapshot,
    revocations: () => state.revocations,
    isFresh: (now) => state.isFresh(now),
  };

  const lastSeen = createLastSeen({ touch: (id, at) => repos.links.touch(id, at), onError: w.onError });

  const deps: GatewayDeps = {
    clock: w.clock,
    policy,
    verifier: createVerifier({ keys: ring, issuer: w.issuer, clock: w.clock, cache }),
    links: repos.links,
    upstream: w.upstream,
    routes: createUpstreamRoutes(),
    audit: w.audit,
    limits: createLimits({
      rateLimiter: w.rateLimiter,
      recordQuota: w.recordQuota,
      defaults: w.limitDefaults,
    }),
    config: w.config,
    ready: w.ready,
    seen: lastSeen.seen,
    suspendLink: async (linkId, reason, now) => {
      const r = await repos.links.suspend(linkId, reason, now);
      // Refused here at once, before the feed brings it back: suspending early only fails closed.
      state.snapshot.suspended.add(linkId);
      if (!r.suspended) return;
      // Other gateways hear it on the feed; if the publish fails they reload on the version gap.
      await w.bus
        .publish({ version: r.version, change: { type: "link-suspended", linkId, reason } })
        .catch((err: unknown) => w.onError?.(err));
    },
  };

  return {
    deps,
    state,
    ring,
    start: () => state.start(),
    /** Stops following the feed and writes the last "last seen" times. */
    stop: async () => {
      state.stop();
      await lastSeen.stop();
    },
  };
}

/**
 * Compares the stored policy version with the state's every `intervalMs` and reloads when the
 * state trails. Catches a lost last message (no later message reveals the gap) and serves a
 * gateway that shares a database but no feed with the token service.
 */
export function startVersionPoller(state: PolicyState, db: Db, intervalMs = 1000) {
  const timer = setInterval(async () => {
    try {
      const stored = await currentPolicyVersion(db);
      const mine = state.status().version;
      if (mine === null || stored > mine) await state.reload();
    } catch {
      // The state's own staleness bound decides when to fail closed.
    }
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
