import { randomBytes } from "node:crypto";
import { AnonymousDenialSink, type AuditSink, BatchAuditWriter } from "@phaselock/audit";
import { type Clock, createMetricsRegistry, type PinoLogger, type Registry } from "@phaselock/core";
import {
  createRepos,
  type Db,
  loadPolicyChanges,
  loadPolicySnapshot,
  loadPublicKeys,
  sharedGatewaySecret,
} from "@phaselock/db";
import {
  type ChangeBus,
  LoggedFeed,
  type Meter,
  PolicyState,
  type RateLimiter,
  type RecordQuota,
} from "@phaselock/state";
import { createVerifier, KeyRing, VerifyCache } from "@phaselock/tokens";
import { createApp } from "./app.ts";
import type { GatewayConfig, GatewayDeps, PolicyView } from "./deps.ts";
import type { GatewayServiceConfig } from "./env.ts";
import { createLastSeen } from "./last-seen.ts";
import { createLimits, type LimitDefaults } from "./limits.ts";
import { createGatewayMetrics, type GatewayMetrics } from "./metrics.ts";
import { createNodeHandler } from "./node-handler.ts";
import { createDeviceIds, createSessionCache } from "./sessions.ts";
import { createHttpUpstream, type Upstream } from "./upstream.ts";
import { createUpstreamRoutes } from "./upstream-routes.ts";

/** The deployment's shared state a gateway runs on; the stack hands one set to every service. */
export interface GatewayInfra {
  db: Db;
  stores: {
    bus: ChangeBus;
    rateLimiter: RateLimiter;
    recordQuota: RecordQuota;
    /** both of the above in one store call per step (default: separate calls) */
    meter?: Meter;
    /** a quick probe of the store for `/readyz` */
    ping(): Promise<void>;
  };
  clock: Clock;
  /** Default: a batching writer into the database's hash chain, closed by `stop()`. */
  audit?: AuditSink;
  /** Default: HTTP to `config.upstreamUrl`, closed by `stop()`. */
  upstream?: Upstream;
  /** Secrets used when the config leaves them unset (never in production: the schema refuses). */
  fallbackSecrets?: { phonebankSecret?: string; auditIpKey?: string };
  limitDefaults?: Partial<LimitDefaults>;
  /**
   * How often the change log is read even without a hint from the feed; `false` turns the poll
   * off (tests that decide themselves when a gateway catches up).
   */
  versionPollMs?: number | false;
  onError?: (err: unknown) => void;
  /** Where `/metrics` reads from. Default: a registry of this gateway's own. */
  metricsRegistry?: Registry;
  /** One JSON line per request (node-handler.ts). Default: none. */
  logger?: PinoLogger;
}

/** What of the service config the Hono app and the proxy read per request. */
export function gatewayAppConfig(
  config: GatewayServiceConfig,
  fallback: GatewayInfra["fallbackSecrets"] = {},
): GatewayConfig {
  const upstreamSecret = config.phonebankSecret ?? fallback.phonebankSecret;
  const ipHashKey = config.auditIpKey ?? fallback.auditIpKey;
  // Fail closed: a gateway with no secret would be turned away by the phone bank at best.
  if (!upstreamSecret) throw new Error("gateway: PHONEBANK_SECRET is not set");
  if (!ipHashKey) throw new Error("gateway: AUDIT_IP_KEY is not set");
  return {
    upstreamSecret,
    secureCookies: config.secureCookies,
    maxBodyBytes: config.maxBodyBytes,
    ipHashKey,
    maxDevicesPerLink: config.maxDevicesPerLink,
    trustedProxies: config.trustedProxies,
    bodyTimeoutMs: config.bodyTimeoutMs,
    maxConcurrentPerLink: config.maxConcurrentPerLink,
    sessionTtlSeconds: config.sessionTtlSeconds,
    publicGatewayUrl: config.publicGatewayUrl,
    metricsToken: config.metricsToken,
  };
}

/**
 * Builds a gateway over a database and shared stores: the policy state (loaded, then kept
 * current by the feed and the version poller), the key ring (re-read on every reload and patched
 * by changes), a verifier with its cache, the upstream, the audit writer, the
 * Hono app and the node handler that serves `/pb/*` directly. Call `start()` before serving.
 */
export function createGateway(config: GatewayServiceConfig, infra: GatewayInfra) {
  const { db, clock, stores } = infra;
  const repos = createRepos(db);
  const ring = new KeyRing();
  const cache = new VerifyCache({ maxEntries: 100_000 });
  // Assigned below, once what its gauges read exists; the writer only calls it after a commit.
  let metrics: GatewayMetrics | undefined;
  const ownAudit = infra.audit
    ? undefined
    : new BatchAuditWriter({
        db,
        clock,
        onError: infra.onError,
        onCommit: (seconds, events) => metrics?.auditCommit(seconds, events),
      });
  // Anonymous denials (no valid credential) fold into one event per client hash and minute.
  const audit = new AnonymousDenialSink({ sink: infra.audit ?? (ownAudit as AuditSink), clock });
  const ownUpstream = infra.upstream
    ? undefined
    : createHttpUpstream({
        baseUrl: config.upstreamUrl,
        timeoutMs: config.upstreamTimeoutMs,
        maxBodyBytes: config.maxBodyBytes,
      });
  const upstream = infra.upstream ?? (ownUpstream as Upstream);

  // Keys come from Postgres only (revoked keys excluded), never from a message.
  const refreshKeys = async () => ring.set(await loadPublicKeys(db, clock.now()));
  // Changes from the Postgres log; the bus only says when to read it.
  const feed = new LoggedFeed({
    bus: stores.bus,
    log: {
      since: async (after) => {
        const read = await loadPolicyChanges(db, after);
        // Applied in the same tick as this read: the lag from commit to application here.
        const now = Date.now();
        for (const c of read.changes) if (c.at) metrics?.revocationLag((now - c.at.getTime()) / 1000);
        return read;
      },
    },
    position: () => state.status().version,
    pollMs: infra.versionPollMs ?? 1000,
    onError: infra.onError,
  });
  const state: PolicyState = new PolicyState({
    source: { load: () => loadPolicySnapshot(db) },
    bus: feed,
    clock,
    staleAfterMs: config.staleAfterMs,
    onError: infra.onError,
    refreshKeys,
    onChange: (change) => {
      if (change.type === "signing-key-revoked") {
        // Dropped before anything else runs (the verify cache re-checks the ring on every hit).
        ring.remove(change.kid);
      }
      if (change.type === "signing-key" || change.type === "signing-key-revoked") {
        refreshKeys().catch((err: unknown) => {
          infra.onError?.(err);
          void state.reload().catch(() => {});
        });
      }
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
    nowMs: () => clock.now().getTime(),
  });
  // Loaded by start(): until then no device id verifies and none can be issued (fail closed).
  let deviceKey: Buffer | undefined;

  const lastSeen = createLastSeen({ touch: (id, at) => repos.links.touch(id, at), onError: infra.onError });

  metrics = createGatewayMetrics(infra.metricsRegistry ?? createMetricsRegistry("gateway"), {
    feedAgeSeconds: () => {
      const at = state.lastConfirmedAt;
      return at ? (clock.now().getTime() - at.getTime()) / 1000 : null;
    },
    // The writer's queue: aggregated anonymous denials are held as counts, not events, until their minute ends.
    auditPending: () => ((infra.audit ?? ownAudit) as { pending?: number }).pending ?? 0,
    verifyCache: () => ({ hits: cache.hits, misses: cache.misses, size: cache.size }),
    upstreamPool: () => ownUpstream?.stats(),
  });

  const deps: GatewayDeps = {
    clock,
    metrics,
    logger: infra.logger,
    policy,
    verifier: createVerifier({ keys: ring, issuer: config.issuer, clock, cache }),
    links: repos.links,
    sessions: {
      ...repos.sessions,
      resolve: sessions.resolve,
      rotate: async (id, tokenHash, now) => {
        const rotated = await sessions.rotate(id, tokenHash, now);
        // Announced like an end: other gateways drop the old credential when they hear of it, not
        // at their next heartbeat. The version read after the commit covers the rotation's.
        if (rotated) {
          await repos.policyState
            .current()
            .then((version) => stores.bus.publish({ version }))
            .catch((err: unknown) => infra.onError?.(err));
        }
        return rotated;
      },
    },
    endSession: async (tokenHash, now) => {
      const r = await repos.sessions.end(tokenHash, "signed out", now);
      sessions.drop(tokenHash);
      if (!r) return false;
      // The version bump alone retires every other gateway's cached copy once it hears of it.
      await stores.bus.publish({ version: r.version }).catch((err: unknown) => infra.onError?.(err));
      return true;
    },
    devices: createDeviceIds(() => deviceKey),
    keyKnown: (kid) => ring.has(kid),
    upstream,
    routes: createUpstreamRoutes(),
    audit,
    limits: createLimits({
      rateLimiter: stores.rateLimiter,
      recordQuota: stores.recordQuota,
      meter: stores.meter,
      defaults: infra.limitDefaults,
    }),
    config: gatewayAppConfig(config, infra.fallbackSecrets),
    ready: async () => {
      await db.execute("select 1");
      await stores.ping();
      return true;
    },
    seen: lastSeen.seen,
    suspendLink: async (linkId, reason, now) => {
      const r = await repos.links.suspend(linkId, reason, now);
      // Refused here at once, before the feed brings it back: suspending early only fails closed.
      state.snapshot.suspended.add(linkId);
      if (!r.suspended) return;
      // Other gateways hear it on the feed; if the publish fails they reload on the version gap.
      await stores.bus.publish({ version: r.version }).catch((err: unknown) => infra.onError?.(err));
    },
  };

  const app = createApp(deps);

  return {
    config,
    deps,
    app,
    metrics,
    /** `/pb/*` on node:http directly (the proxy's fast path); every other route through Hono. */
    handler: createNodeHandler(deps, app),
    state,
    ring,
    audit,
    /** Reads the change log now (tests that turned the poll off). */
    catchUp: () => feed.catchUp(),
    start: async () => {
      const key = await sharedGatewaySecret(db, "device-mac", () => randomBytes(32).toString("base64url"));
      deviceKey = Buffer.from(key, "base64url");
      await state.start();
    },
    /** Stops following the feed, writes the last "last seen" times and what it owns. */
    stop: async () => {
      state.stop();
      await lastSeen.stop();
      // The held aggregates go to the writer first; a writer we were given is closed by its owner.
      if (ownAudit) await audit.close();
      else audit.stop();
      await ownUpstream?.close();
    },
  };
}

export type Gateway = ReturnType<typeof createGateway>;

/**
 * Reads the change log every `intervalMs` through `catchUp` (a gateway's): what the built-in poll
 * does, for tests that turned it off and want it back on a short interval.
 */
export function startVersionPoller(gateway: { catchUp(): Promise<void> }, intervalMs = 1000) {
  const timer = setInterval(() => {
    gateway.catchUp().catch(() => {
      // The state's own staleness bound decides when to fail closed.
    });
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
