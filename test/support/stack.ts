/**
 * The whole product in one process: a token service, N gateways and the demo phone bank over ONE
 * database, sharing one FakeClock, each service with its own change-feed bus (and, on Postgres,
 * its own connection pool), driven through `app.request(...)`. Seeding goes through the token
 * service's HTTP API with the admin token, as `pnpm start` does.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AuditSink, BatchAuditWriter, MemoryAuditSink } from "@phaselock/audit";
import { FakeClock, sha256Hex } from "@phaselock/core";
import {
  createDb,
  createRepos,
  currentPolicyVersion,
  type Db,
  type DbHandle,
  type StallWatchOptions,
} from "@phaselock/db";
import type { TestDb } from "@phaselock/db/testing";
import {
  createGateway,
  type createApp as createGatewayApp,
  createInProcessUpstream,
  type Gateway,
  type InProcessApp,
  parseGatewayEnv,
} from "@phaselock/gateway";
import { createApp as createPhonebankApp } from "@phaselock/phonebank";
import {
  type BusStatus,
  type ChangeBus,
  createRedisClient,
  isCluster,
  LeasedMeter,
  MemoryRateLimiter,
  MemoryRecordQuota,
  pingRedis,
  type RedisClient,
  RedisRateLimiter,
  RedisRecordQuota,
  redisLimitsMeter,
} from "@phaselock/state";
import {
  createTokenService,
  type createApp as createTokenServiceApp,
  type Logger,
  parseTokenServiceEnv,
  type TokenServiceDeps,
} from "@phaselock/token-service";
import { vi } from "vitest";
import { type Feed, TapBus } from "./feeds.ts";

export const ISSUER = "http://127.0.0.1:4000";
export const PUBLIC_GATEWAY_URL = "http://127.0.0.1:8080";
/** Where every stack's FakeClock starts: 2020-03-01, the day after the leadership-2020 ballot opened. */
export const T0 = "2020-03-01T12:00:00.000Z";

export const DAY = 86_400_000;

export type GatewayApp = ReturnType<typeof createGatewayApp>;
export type TokenServiceApp = ReturnType<typeof createTokenServiceApp>;

/** One request as the phone bank received it, and what it answered before the gateway filtered it. */
export interface UpstreamRecord {
  method: string;
  path: string;
  headers: Headers;
  status: number;
  body: string;
}

export interface GatewayNode {
  name: string;
  app: GatewayApp;
  /** The gateway as its builder made it (policy state, deps, app). */
  wiring: Gateway;
  bus: ChangeBus;
  /** Everything this gateway's bus reported (a listener of our own beside the policy state's). */
  feed: BusStatus[];
  audit: AuditSink;
  /** Background failures of the policy state (reloads, listeners). */
  errors: unknown[];
  db: Db;
  /** With `redisLimits`: the gateway's limits client and its leased meter (as `createStores` builds). */
  limits?: { redis: RedisClient; meter: LeasedMeter };
  /** Stops the policy state and closes this gateway's bus, audit writer and pool. */
  stop(): Promise<void>;
}

export interface StackOptions {
  /** The one database. On Postgres (`url` set) each service opens its own pool to it. */
  db: TestDb;
  feed: Feed;
  clock?: FakeClock;
  /** Gateways to start; default 1. */
  gateways?: number;
  /** Default 5000, as in production. Measured on the shared FakeClock. */
  staleAfterMs?: number;
  /** `database` (default): a BatchAuditWriter per service, into the shared hash chain. */
  audit?: "database" | "memory";
  /**
   * Rate limits, record quotas and device counts in Redis, shared by every gateway (as in
   * production); default: in memory, one set per gateway.
   */
  redisLimits?: { url: string; prefix: string };
  /** The gateways' limits through a LeasedMeter (createStores' `leasedLimits`); default the exact meter. */
  leasedLimits?: boolean;
  /** with `leasedLimits`: rate tokens taken ahead too (createStores' `leasedRateTokens`) */
  leasedRateTokens?: boolean;
  /** The gateways' default limits; default: room for every request a test makes. */
  limitDefaults?: { requestsPerMinute: number; recordsPerHour: number; campaignFactor?: number };
  /** Reaches the database another way for the token service (e.g. through a proxy a test can cut). */
  tokenServiceDatabaseUrl?: string;
  /** How each service's own pool notices a database that stopped answering (createDb's `stallWatch`). */
  stallWatch?: StallWatchOptions;
  /**
   * The environment both services are parsed from, as `pnpm start` hands one to all; default
   * `TOKEN_SERVICE_URL=ISSUER`.
   */
  env?: Record<string, string>;
}

export interface ApiResult<T = Record<string, unknown>> {
  status: number;
  body: T;
  res: Response;
}

export interface Stack {
  clock: FakeClock;
  db: TestDb;
  feed: Feed;
  adminToken: string;
  tokenService: {
    app: TokenServiceApp;
    deps: TokenServiceDeps;
    /** The token service's bus: records what it published, can lose messages. */
    bus: TapBus;
    logs: { level: string; msg: string; data?: Record<string, unknown> }[];
  };
  phonebank: { app: InProcessApp; seen: UpstreamRecord[] };
  gateways: GatewayNode[];
  /**
   * Starts one more gateway on the same database (as a restart or a new instance would);
   * `databaseUrl` reaches that database another way (e.g. through a proxy a test can cut).
   */
  startGateway(name?: string, opts?: { databaseUrl?: string }): Promise<GatewayNode>;
  /** A token-service request; `token` defaults to the admin token, `null` sends none. */
  api<T = Record<string, unknown>>(
    method: string,
    path: string,
    opts?: { body?: unknown; token?: string | null },
  ): Promise<ApiResult<T>>;
  /**
   * Moves the shared clock. Audit queues are flushed first (an event queued at the old time would
   * look overdue), the feed is confirmed, and by default it waits until every gateway is fresh.
   */
  advance(ms: number, opts?: { waitFresh?: boolean }): Promise<void>;
  /** Waits until every gateway holds the database's policy version and is fresh. */
  synced(timeoutMs?: number): Promise<void>;
  /**
   * A live session of an issued link (one per token while it lasts), stored as a redemption would store it but
   * without the checks, for tests of what `/pb` answers for a link that may no longer redeem.
   */
  session(token: string): Promise<string>;
  /** Stops everything and drops the database. */
  close(): Promise<void>;
}

/** A logger that keeps what it is told, for asserting on warnings. */
const keepingLogger = (logs: Stack["tokenService"]["logs"]): Logger => ({
  info: (msg, data) => void logs.push({ level: "info", msg, ...(data ? { data } : {}) }),
  warn: (msg, data) => void logs.push({ level: "warn", msg, ...(data ? { data } : {}) }),
  error: (msg, data) => void logs.push({ level: "error", msg, ...(data ? { data } : {}) }),
});

/** Records what reached the phone bank, including its unfiltered answer. */
function recording(app: InProcessApp, seen: UpstreamRecord[]): InProcessApp {
  return {
    async request(req) {
      const res = await app.request(req);
      seen.push({
        method: req.method,
        path: new URL(req.url).pathname,
        headers: new Headers(req.headers),
        status: res.status,
        body: await res.clone().text(),
      });
      return res;
    },
  };
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const clock = opts.clock ?? new FakeClock(T0);
  const env = opts.env ?? { TOKEN_SERVICE_URL: ISSUER };
  const { db, feed } = opts;
  const staleAfterMs = opts.staleAfterMs ?? 5000;
  const adminToken = `admin-${randomBytes(24).toString("hex")}`;
  const upstreamSecret = randomBytes(24).toString("hex");
  const closers: Array<() => Promise<void>> = [];
  const audits: AuditSink[] = [];

  /** Each service's own pool on Postgres; PGlite is one in-process database, shared. */
  const open = (url = db.url): { handle: DbHandle; own: boolean } =>
    url
      ? { handle: createDb({ databaseUrl: url, poolSize: 3, stallWatch: opts.stallWatch }), own: true }
      : { handle: db.handle, own: false };
  const auditFor = (d: Db): AuditSink => {
    const sink =
      opts.audit === "memory"
        ? new MemoryAuditSink()
        : new BatchAuditWriter({ db: d, clock, flushIntervalMs: 10, onError: () => {} });
    audits.push(sink);
    return sink;
  };

  // Phone bank
  const seen: UpstreamRecord[] = [];
  const phonebank = recording(createPhonebankApp({ secret: upstreamSecret, clock }), seen);

  // Token service
  const ts = open(opts.tokenServiceDatabaseUrl);
  const tsAudit = auditFor(ts.handle.db);
  const tsBus = new TapBus(feed.bus("token-service"));
  const logs: Stack["tokenService"]["logs"] = [];
  const checkpointRoot = mkdtempSync(join(tmpdir(), "phaselock-e2e-cp-"));
  // The builders `pnpm start` and each service's main.ts use, over the same environment parse.
  const tokenService = createTokenService(
    parseTokenServiceEnv({
      ...env,
      PUBLIC_GATEWAY_URL,
      ADMIN_TOKEN: adminToken,
      KEY_ENCRYPTION_KEY: randomBytes(32).toString("hex"),
      // Its own folder: every stack is another log, and two logs' notes in one folder collide.
      AUDIT_CHECKPOINT_DIR: env.AUDIT_CHECKPOINT_DIR ?? join(checkpointRoot, "cp"),
    }),
    { db: ts.handle.db, stores: { bus: tsBus }, clock, audit: tsAudit, logger: keepingLogger(logs) },
  );
  await tokenService.start();
  const { app: tokenApp, deps } = tokenService;
  closers.push(async () => {
    await tokenService.stop();
    await tsAudit.close();
    await tsBus.close();
    if (ts.own) await ts.handle.close();
  });
  // After the token service's stop, which signs a last checkpoint into it.
  closers.push(() => rm(checkpointRoot, { recursive: true, force: true }));

  // Gateways
  const gateways: GatewayNode[] = [];
  let started = 0;
  const startGateway: Stack["startGateway"] = async (name = `gateway-${++started}`, o = {}) => {
    const g = open(o.databaseUrl);
    const bus = feed.bus(name);
    const audit = auditFor(g.handle.db);
    const errors: unknown[] = [];
    const statuses: BusStatus[] = [];
    const redis = opts.redisLimits ? createRedisClient(opts.redisLimits.url) : undefined;
    redis?.on("error", () => {});
    // As createStores builds them for Redis: the separate stores and the meter it chooses.
    const limits = opts.redisLimits;
    const limiters =
      redis && limits
        ? {
            rateLimiter: new RedisRateLimiter({ redis, prefix: limits.prefix }),
            recordQuota: new RedisRecordQuota({ redis, prefix: limits.prefix }),
          }
        : { rateLimiter: new MemoryRateLimiter(), recordQuota: new MemoryRecordQuota() };
    const chosen =
      redis && limits
        ? redisLimitsMeter({
            redis,
            ratePrefix: limits.prefix,
            quotaPrefix: limits.prefix,
            ...limiters,
            leased: opts.leasedLimits,
            rateLeases: opts.leasedRateTokens,
            onError: (err) => void errors.push(err),
          })
        : undefined;
    const meter = chosen instanceof LeasedMeter ? chosen : undefined;
    const unlisten = bus.subscribe({ onMessage: () => {}, onStatus: (s) => void statuses.push(s) });
    const config = parseGatewayEnv({
      ...env,
      PHONEBANK_SECRET: upstreamSecret,
      AUDIT_IP_KEY: "e2e-ip-key",
      STALE_AFTER_MS: String(staleAfterMs),
    });
    const wiring = createGateway(config, {
      db: g.handle.db,
      stores: {
        bus,
        ...limiters,
        ...(chosen ? { meter: chosen } : {}),
        ping: async () => {
          if (redis) await pingRedis(redis);
        },
      },
      clock,
      upstream: createInProcessUpstream(phonebank),
      audit,
      // Rate limits are not what these tests are about: room for every request a test makes.
      limitDefaults: opts.limitDefaults ?? { requestsPerMinute: 10_000, recordsPerHour: 10_000 },
      // Tests decide when a gateway catches up (some start a poller of their own).
      versionPollMs: false,
      onError: (err) => void errors.push(err),
    });
    await wiring.start();
    let stopped = false;
    const node: GatewayNode = {
      name,
      app: wiring.app,
      wiring,
      bus,
      feed: statuses,
      audit,
      errors,
      db: g.handle.db,
      ...(redis && meter ? { limits: { redis, meter } } : {}),
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await wiring.stop();
        await meter?.close().catch(() => {});
        unlisten();
        await audit.close();
        await bus.close();
        redis?.disconnect();
        if (g.own) await g.handle.close();
        const i = gateways.indexOf(node);
        if (i >= 0) gateways.splice(i, 1);
      },
    };
    gateways.push(node);
    return node;
  };
  for (let i = 0; i < (opts.gateways ?? 1); i++) await startGateway();

  const api: Stack["api"] = async (method, path, o = {}) => {
    const headers: Record<string, string> = {};
    const token = o.token === undefined ? adminToken : o.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (o.body !== undefined) headers["content-type"] = "application/json";
    const res = await tokenApp.request(path, {
      method,
      headers,
      ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null, res };
  };

  const synced: Stack["synced"] = async (timeoutMs = 5000) => {
    const version = await currentPolicyVersion(db.handle.db);
    await vi.waitFor(
      () => {
        for (const g of gateways) {
          const s = g.wiring.state.status();
          if (s.version !== version || !s.fresh) {
            throw new Error(`${g.name} at version ${s.version} (fresh: ${s.fresh}), database at ${version}`);
          }
        }
      },
      { timeout: timeoutMs, interval: 20 },
    );
  };

  const sessionsByToken = new Map<string, { credential: string; expiresAt: Date }>();
  const session: Stack["session"] = async (token) => {
    const known = sessionsByToken.get(token);
    if (known && known.expiresAt > clock.now()) return known.credential;
    const repos = createRepos(db.handle.db);
    const byCode = token.includes(".") ? null : await repos.links.getByCodeHash(sha256Hex(token));
    const claims = byCode
      ? { jti: byCode.id, exp: byCode.expiresAt.getTime() / 1000 }
      : (JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as {
          jti: string;
          exp: number;
        });
    const credential = `pls_${randomBytes(16).toString("base64url")}`;
    const now = clock.now();
    const expiresAt = new Date(Math.min(now.getTime() + 43_200_000, claims.exp * 1000));
    await repos.sessions.open({
      id: `ses_${randomBytes(8).toString("hex")}`,
      tokenHash: sha256Hex(credential),
      linkId: claims.jti,
      deviceId: "dev_e2e",
      createdAt: now,
      expiresAt,
    });
    sessionsByToken.set(token, { credential, expiresAt });
    return credential;
  };

  return {
    clock,
    db,
    feed,
    adminToken,
    session,
    tokenService: { app: tokenApp, deps, bus: tsBus, logs },
    phonebank: { app: phonebank, seen },
    gateways,
    startGateway,
    api,
    advance: async (ms, o = {}) => {
      await Promise.all(audits.map((a) => a.flush()));
      clock.advance(ms);
      feed.beat();
      if (o.waitFresh !== false) await synced();
    },
    synced,
    close: async () => {
      for (const g of [...gateways]) await g.stop();
      for (const c of closers) await c();
      await feed.close();
      await db.drop();
      if (opts.redisLimits) await deleteKeys(opts.redisLimits.url, opts.redisLimits.prefix);
    },
  };
}

/** Removes what the gateways left in the shared Redis (device counts live for 91 days). */
async function deleteKeys(url: string, prefix: string): Promise<void> {
  const redis = createRedisClient(url, { enableOfflineQueue: true }, { enableOfflineQueue: true });
  try {
    // On a cluster, SCAN walks one node: walk every master, deleting key by key (keys of different
    // slots cannot go in one DEL).
    await redis.ping(); // a cluster client knows its nodes once it is ready
    for (const node of isCluster(redis) ? redis.nodes("master") : [redis]) {
      let cursor = "0";
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        for (const key of keys) await node.del(key);
        cursor = next;
      } while (cursor !== "0");
    }
  } finally {
    redis.disconnect();
  }
}
