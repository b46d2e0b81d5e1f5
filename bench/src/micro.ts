/** In-process micro-benchmarks: token verification, issuance, revocation propagation, audit append. */
import { randomBytes } from "node:crypto";
import { setImmediate as tick } from "node:timers/promises";
import { benchAppend, MemoryAuditSink, prepareEvent } from "@phaselock/audit";
import { epochSeconds, sha256Hex, systemClock } from "@phaselock/core";
import { createDb, type DbHandle } from "@phaselock/db";
import {
  checkRequest,
  createGateway,
  type GatewayDeps,
  ipHash,
  parseGatewayEnv,
  type Upstream,
  UpstreamError,
} from "@phaselock/gateway";
import { createApp as createPhonebank } from "@phaselock/phonebank";
import type { LinkClaims } from "@phaselock/policy";
import { MemoryBus, MemoryRateLimiter, MemoryRecordQuota, RedisBus } from "@phaselock/state";
import {
  createVerifier,
  generateSigningKey,
  KeyRing,
  signLink,
  TOKEN_AUDIENCE,
  VerifyCache,
} from "@phaselock/tokens";
import { createScratchDb } from "./db.ts";
import { median, percentile } from "./stats.ts";
import { createTokenService, ISSUER } from "./token-service.ts";

/** Per-process counters, as a single gateway without Redis has them. */
const memoryLimits = () => ({
  rateLimiter: new MemoryRateLimiter(),
  recordQuota: new MemoryRecordQuota(),
  ping: async () => {},
});

// ---------------------------------------------------------------------------------------------
// Token verification

export interface VerifyBenchResult {
  misses: number;
  hits: number;
  /** entries in the cache during the hit measurements (verified tokens plus synthetic fillers) */
  cacheEntries: number;
  /** µs per verify of a token not in the cache (SHA-256 key, jose EdDSA verify, cache insert) */
  missUs: number;
  /** µs per verify of a cached token, the only entry in its cache */
  hitAloneUs: number;
  /** µs per verify of cached tokens taken in turn (many volunteers), cache of `cacheEntries` */
  hitRoundRobinUs: number;
  /** µs per verify of one token again and again (one busy volunteer), cache of `cacheEntries` */
  hitHotUs: number;
}

/** Entries in the cache for the hit measurements: a few thousand active links is a normal day. */
const CACHE_ENTRIES = 10_000;

export async function benchVerify(opts: {
  misses: number;
  hits: number;
  hotHits: number;
}): Promise<VerifyBenchResult> {
  const key = await generateSigningKey();
  const ring = await KeyRing.from({ keys: [key.publicJwk] });
  const clock = systemClock;
  const cache = new VerifyCache({ maxEntries: 100_000 });
  const verifier = createVerifier({ keys: ring, issuer: ISSUER, clock, cache });
  const now = epochSeconds(clock.now());
  const claims = (i: number): LinkClaims => ({
    iss: ISSUER,
    aud: TOKEN_AUDIENCE,
    sub: `volunteer-${i}`,
    jti: `lnk_bench${i.toString(36).padStart(8, "0")}`,
    iat: now,
    nbf: now,
    exp: now + 3600,
    cmp: "bench-campaign",
    cst: "bench-2026",
    phs: "ballot",
    scp: ["calls:read", "calls:write", "members:read"],
  });
  const warm = 500;
  const tokens: string[] = [];
  for (let i = 0; i < opts.misses + warm + 1; i++) tokens.push(await signLink(key, claims(i)));
  const alone = tokens.pop()!;

  const check = (r: { ok: boolean }) => {
    if (!r.ok) throw new Error("verify bench: token refused");
  };
  const timeUs = async (n: number, next: (i: number) => Promise<unknown>) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await next(i);
    return ((performance.now() - t0) * 1000) / n;
  };

  // Warm-up (JIT, key import), on tokens not used below; then misses on fresh tokens.
  const [warmTokens, misses] = [tokens.slice(0, warm), tokens.slice(warm)];
  for (const t of warmTokens) check(await verifier.verify(t));
  for (let i = 0; i < 20_000; i++) check(await verifier.verify(warmTokens[i % warm]!));
  const missUs = await timeUs(misses.length, async (i) => check(await verifier.verify(misses[i]!)));

  // A hit on its own: the cheapest it gets.
  const single = createVerifier({ keys: ring, issuer: ISSUER, clock, cache: new VerifyCache() });
  check(await single.verify(alone));
  const hitAloneUs = await timeUs(opts.hits, async () => check(await single.verify(alone)));

  // A cache holding CACHE_ENTRIES links, as a gateway's does after a day of calling.
  const filler = misses[0]!;
  const fillerClaims = (await verifier.verify(filler)) as { ok: true; claims: LinkClaims };
  for (let i = cache.size; i < CACHE_ENTRIES; i++) {
    cache.set(sha256Hex(`filler-${i}`), { claims: fillerClaims.claims, kid: key.kid });
  }
  const cacheEntries = cache.size;
  const hitRoundRobinUs = await timeUs(opts.hits, async (i) =>
    check(await verifier.verify(misses[i % misses.length]!)),
  );
  const hot = misses[misses.length >> 1]!;
  const hitHotUs = await timeUs(opts.hotHits, async () => check(await verifier.verify(hot)));
  return {
    misses: misses.length,
    hits: opts.hits,
    cacheEntries,
    missUs,
    hitAloneUs,
    hitRoundRobinUs,
    hitHotUs,
  };
}

// ---------------------------------------------------------------------------------------------
// The gateway's own checks, without HTTP

export interface ChecksBenchResult {
  ops: number;
  /** µs per request for each step, and all of them together */
  check: number;
  rateLimit: number;
  minimise: number;
  recordQuota: number;
  audit: number;
  total: number;
}

/**
 * What one `GET /pb/calls/next` costs the gateway beyond moving bytes: the gatekeeper (cached
 * verify, revocation, phase, scope, entitlement), the rate limits, the response minimisation of a
 * real phone bank answer, the record quota, and preparing the audit event (IP hash, canonical
 * form). The real wiring over a scratch database; no sockets, no Hono, no Web objects.
 */
export async function benchChecks(opts: {
  adminUrl: string | undefined;
  ops: number;
}): Promise<ChecksBenchResult> {
  const db = await createScratchDb("checks", opts.adminUrl);
  try {
    const ts = await createTokenService(db.handle.db);
    await ts.seed();
    const link = await ts.issueLink("checks-volunteer");
    await ts.close();
    const bus = new MemoryBus();
    const gw = createGateway(
      parseGatewayEnv({
        PHONEBANK_SECRET: "x".repeat(32),
        AUDIT_IP_KEY: "k".repeat(32),
        MAX_BODY_BYTES: "1024",
        STALE_AFTER_MS: "60000",
        TOKEN_SERVICE_URL: ISSUER,
      }),
      {
        db: db.handle.db,
        stores: { bus, ...memoryLimits() },
        clock: systemClock,
        audit: new MemoryAuditSink(),
        upstream: NO_UPSTREAM,
        versionPollMs: false,
      },
    );
    await gw.start();
    try {
      const { deps } = gw;
      // `/pb/*` takes a session, not the link: one redemption, as the volunteer's first tap.
      const opened = await gw.app.request(`/l/${link.token}`, {
        method: "POST",
        headers: { accept: "application/json" },
      });
      if (opened.status !== 201) throw new Error(`checks bench: redemption answered ${opened.status}`);
      const { session } = (await opened.json()) as { session: string };
      const phonebank = createPhonebank({ secret: "s".repeat(32) });
      const answer = await phonebank.request("/calls/next", {
        headers: { "x-phaselock-gateway-secret": "s".repeat(32), "x-phaselock-campaign": "bench-campaign" },
      });
      const body = await answer.text();
      const rule = deps.routes("GET", "/calls/next")?.response;
      if (!rule) throw new Error("checks bench: /calls/next has no response rule");

      const steps = { check: 0, rateLimit: 0, minimise: 0, recordQuota: 0, audit: 0 };
      const ipHashConfig = { ipHashKey: "k".repeat(32) };
      const run = async (n: number, keep: boolean) => {
        for (let i = 0; i < n; i++) {
          let t = performance.now();
          const outcome = await checkRequest(deps, {
            credential: session,
            via: "session",
            scope: "calls:read",
          });
          if (!outcome.ok) throw new Error(`checks bench: refused (${outcome.refusal.code})`);
          const now = systemClock.now();
          let t2 = performance.now();
          if (keep) steps.check += t2 - t;
          t = t2;
          if (await deps.limits.request(outcome.claims, outcome.campaign, now))
            throw new Error("rate limited");
          t2 = performance.now();
          if (keep) steps.rateLimit += t2 - t;
          t = t2;
          const filtered = rule.apply(JSON.parse(body));
          const out = JSON.stringify(filtered.body);
          t2 = performance.now();
          if (keep) steps.minimise += t2 - t;
          t = t2;
          const recordId = filtered.recordId ?? "none";
          if (await deps.limits.admitRecord(outcome.claims, outcome.campaign, recordId, now))
            throw new Error("quota");
          t2 = performance.now();
          if (keep) steps.recordQuota += t2 - t;
          t = t2;
          prepareEvent({
            type: "access",
            at: now,
            actor: outcome.claims.sub,
            campaignId: outcome.claims.cmp,
            linkId: outcome.claims.jti,
            decision: "allow",
            reason: null,
            data: {
              route: "GET /calls/next",
              // The gateway's own (remembered per client, as a volunteer's requests are).
              ipHash: ipHash(ipHashConfig, "127.0.0.1"),
              status: 200,
              record: recordId,
              bytes: out.length,
            },
          });
          if (keep) steps.audit += performance.now() - t;
        }
      };
      await run(Math.min(20_000, opts.ops), false);
      await run(opts.ops, true);
      const us = (ms: number) => (ms * 1000) / opts.ops;
      const r = {
        ops: opts.ops,
        check: us(steps.check),
        rateLimit: us(steps.rateLimit),
        minimise: us(steps.minimise),
        recordQuota: us(steps.recordQuota),
        audit: us(steps.audit),
      };
      return { ...r, total: r.check + r.rateLimit + r.minimise + r.recordQuota + r.audit };
    } finally {
      await gw.stop();
      await bus.close();
    }
  } finally {
    await db.drop();
  }
}

// ---------------------------------------------------------------------------------------------
// Issuance

export interface IssuanceBenchResult {
  database: string;
  batchSize: number;
  batches: number;
  /** links per second by response time of `POST /v1/links/batch`, median over the batches */
  linksPerSecond: number;
  /** the same, counting the wait until the batch's audit events are written */
  linksPerSecondAudited: number;
  /** ms per batch */
  batchMs: number[];
}

export async function benchIssuance(opts: {
  adminUrl: string | undefined;
  batchSize: number;
  batches: number;
}): Promise<IssuanceBenchResult> {
  const db = await createScratchDb("issuance", opts.adminUrl);
  try {
    const ts = await createTokenService(db.handle.db);
    try {
      await ts.seed();
      // Warm-up: a small batch through the same path.
      await ts.issueBatch("warm", 200);
      await ts.audit.flush();
      const batchMs: number[] = [];
      const auditedMs: number[] = [];
      for (let b = 0; b < opts.batches; b++) {
        const t0 = performance.now();
        const links = await ts.issueBatch(`b${b}`, opts.batchSize);
        const t1 = performance.now();
        await ts.audit.flush();
        const t2 = performance.now();
        if (links.length !== opts.batchSize) throw new Error(`issuance bench: got ${links.length} links`);
        batchMs.push(t1 - t0);
        auditedMs.push(t2 - t0);
      }
      return {
        database: db.describe,
        batchSize: opts.batchSize,
        batches: opts.batches,
        linksPerSecond: (opts.batchSize * 1000) / median(batchMs),
        linksPerSecondAudited: (opts.batchSize * 1000) / median(auditedMs),
        batchMs,
      };
    } finally {
      await ts.close();
    }
  } finally {
    await db.drop();
  }
}

// ---------------------------------------------------------------------------------------------
// Revocation propagation

export interface RevocationBenchResult {
  database: string;
  revocations: number;
  /** ms from the revoke call's return until all four gateways deny */
  p50: number;
  p99: number;
  max: number;
  /** denied by both already when the call returned */
  atReturn: number;
  /** ms of the revoke call itself (commit, audit queue, publish) */
  callP50: number;
}

const NO_UPSTREAM: Upstream = {
  forward: async () => {
    throw new UpstreamError("upstream_unreachable", "no upstream in this benchmark");
  },
};

/**
 * Four gateways, each with its own Redis change feed connection, policy state and (on Postgres)
 * connection pool, and the token service with another: revoke a link, then poll every gateway's
 * checks (between polls the event loop runs, so feed messages are handled) until all answer
 * `revoked`.
 */
const GATEWAYS = 4;

export async function benchRevocation(opts: {
  adminUrl: string | undefined;
  redisUrl: string;
  count: number;
}): Promise<RevocationBenchResult> {
  const db = await createScratchDb("revocation", opts.adminUrl);
  const prefix = `pl:bench:${randomBytes(6).toString("hex")}:`;
  const closers: (() => Promise<void>)[] = [];
  try {
    const tsBus = new RedisBus({ url: opts.redisUrl, prefix, heartbeatMs: 200 });
    closers.push(() => tsBus.close());
    const ts = await createTokenService(db.handle.db, { bus: tsBus });
    closers.push(() => ts.close());
    await ts.seed();
    const links = await ts.issueBatch("rev", opts.count);

    const gatekeepers = [];
    for (let i = 0; i < GATEWAYS; i++) {
      const handle: DbHandle =
        db.kind === "postgres" ? createDb({ databaseUrl: db.url!, poolSize: 4 }) : db.handle;
      if (handle !== db.handle) closers.push(() => handle.close());
      const bus = new RedisBus({ url: opts.redisUrl, prefix, heartbeatMs: 200 });
      closers.push(() => bus.close());
      // The version poller runs too (every second), as in production.
      const gw = createGateway(
        parseGatewayEnv({
          PHONEBANK_SECRET: "x".repeat(32),
          AUDIT_IP_KEY: "k",
          MAX_BODY_BYTES: "1024",
          TOKEN_SERVICE_URL: ISSUER,
        }),
        {
          db: handle.db,
          stores: { bus, ...memoryLimits() },
          clock: systemClock,
          audit: new MemoryAuditSink(),
          upstream: NO_UPSTREAM,
        },
      );
      await gw.start();
      closers.push(() => gw.stop());
      gatekeepers.push(linkChecks(gw.deps));
    }

    // Every gateway serves every link before the first revocation (and have them cached).
    const deadline = Date.now() + 10_000;
    for (const l of links) {
      for (const g of gatekeepers) {
        for (;;) {
          const r = await g.check(l.token, "calls:read");
          if (r.ok) break;
          if (Date.now() > deadline)
            throw new Error(`revocation bench: link refused before revocation (${r.refusal.code})`);
          await new Promise((res) => setTimeout(res, 20));
        }
      }
    }

    const latencies: number[] = [];
    const calls: number[] = [];
    let atReturn = 0;
    for (const l of links) {
      const t0 = performance.now();
      await ts.call("POST", "/v1/revocations", { scope: "link", linkId: l.id, reason: "bench" });
      const tReturn = performance.now();
      calls.push(tReturn - t0);
      const deniedAt: (number | undefined)[] = gatekeepers.map(() => undefined);
      let first = true;
      for (;;) {
        for (let i = 0; i < gatekeepers.length; i++) {
          if (deniedAt[i] !== undefined) continue;
          const r = await gatekeepers[i]!.check(l.token, "calls:read");
          if (!r.ok && r.refusal.code === "revoked") deniedAt[i] = performance.now();
        }
        if (deniedAt.every((t) => t !== undefined)) break;
        first = false;
        if (performance.now() - tReturn > 10_000) throw new Error("revocation bench: not denied within 10 s");
        await tick();
      }
      if (first) atReturn++;
      latencies.push(Math.max(0, Math.max(...(deniedAt as number[])) - tReturn));
    }
    return {
      database: db.describe,
      revocations: latencies.length,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: Math.max(...latencies),
      atReturn,
      callP50: percentile(calls, 50),
    };
  } finally {
    for (const c of closers.reverse()) await c().catch(() => {});
    await db.drop();
  }
}

// ---------------------------------------------------------------------------------------------
// Audit append

export interface AuditBenchResult {
  database: string;
  events: number;
  runs: number;
  /** events per second, median over the runs */
  eventsPerSecond: number;
  all: number[];
}

export async function benchAudit(opts: {
  adminUrl: string | undefined;
  events: number;
  runs: number;
}): Promise<AuditBenchResult> {
  const db = await createScratchDb("audit", opts.adminUrl);
  try {
    await benchAppend(db.handle.db, 2_000);
    const all: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      all.push(await benchAppend(db.handle.db, opts.events, { at: new Date(Date.UTC(2026, 0, 2 + i)) }));
    }
    return { database: db.describe, events: opts.events, runs: opts.runs, eventsPerSecond: median(all), all };
  } finally {
    await db.drop();
  }
}

/** The link's checks for a `calls:read` route without metering: what the benches time as "check". */
const linkChecks = (deps: GatewayDeps) => ({
  check: (token: string, scope: "calls:read") => checkRequest(deps, { credential: token, scope }),
});
