import { randomBytes } from "node:crypto";
import type { AuditSink } from "@phaselock/audit";
import type { Clock } from "@phaselock/core";
import {
  createRepos,
  currentPolicyVersion,
  type Db,
  loadPolicySnapshot,
  loadPublicKeys,
  sharedGatewaySecret,
} from "@phaselock/db";
import { type ChangeBus, PolicyState, type RateLimiter, type RecordQuota } from "@phaselock/state";
import { createVerifier, KeyRing, VerifyCache } from "@phaselock/tokens";
import type { GatewayConfig, GatewayDeps, PolicyView } from "./deps.ts";
import { createLastSeen } from "./last-seen.ts";
import { createLimits, type LimitDefaults } from "./limits.ts";
import { createDeviceIds, createSessionCache } from "./sessions.ts";
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

  const sessions = createSessionCache({
    store: repos.sessions,
    version: () => state.snapshot.version,
    nowMs: () => w.clock.now().getTime(),
  });
  // Loaded by start(): until then no device id verifies and none can be issued (fail closed).
  let deviceKey: Buffer | undefined;

  const lastSeen = createLastSeen({ touch: (id, at) => repos.links.touch(id, at), onError: w.onError });

  const deps: GatewayDeps = {
    clock: w.clock,
    policy,
    verifier: createVerifier({ keys: ring, issuer: w.issuer, clock: w.clock, cache }),
    links: repos.links,
    sessions: { ...repos.sessions, resolve: sessions.resolve },
    endSession: async (tokenHash, now) => {
      const r = await repos.sessions.end(tokenHash, "signed out", now);
      sessions.drop(tokenHash);
      if (!r) return false;
      // The version bump alone retires every other gateway's cached copy once it hears of it.
      await w.bus
        .publish({ version: r.version, change: { type: "session-ended", sessionId: r.id } })
        .catch((err: unknown) => w.onError?.(err));
      return true;
    },
    devices: createDeviceIds(() => deviceKey),
    keyKnown: (kid) => ring.has(kid),
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
    start: async () => {
      const key = await sharedGatewaySecret(w.db, "device-mac", () => randomBytes(32).toString("base64url"));
      deviceKey = Buffer.from(key, "base64url");
      await state.start();
    },
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
