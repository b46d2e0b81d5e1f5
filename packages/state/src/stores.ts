import type { Redis } from "ioredis";
import type { ChangeBus } from "./bus.ts";
import { MemoryBus } from "./bus.ts";
import { LeasedMeter } from "./leased-meter.ts";
import { composeMeter, type Meter, RedisMeter } from "./metering.ts";
import { MemoryRateLimiter, type RateLimiter, RedisRateLimiter } from "./rate-limit.ts";
import { MemoryRecordQuota, type RecordQuota, RedisRecordQuota } from "./record-quota.ts";
import { RedisBus } from "./redis-bus.ts";
import { createRedisClient, isCluster } from "./redis-client.ts";

/** The shared state of a deployment: the change feed and the counters behind limits. */
export interface Stores {
  kind: "redis" | "memory";
  bus: ChangeBus;
  rateLimiter: RateLimiter;
  recordQuota: RecordQuota;
  /**
   * a request's limits in one store call, over the same counters: on one Redis a
   * {@link RedisMeter} (one script per call), on a Cluster the separate calls; with
   * `leasedLimits` a {@link LeasedMeter}
   */
  meter: Meter;
  /** a quick probe for `/readyz` */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Redis when `redisUrl` is given (several instances), otherwise in-process stores for a single
 * instance. Key and channel names start with `prefix`.
 */
export function createStores(opts: {
  redisUrl?: string | undefined;
  prefix?: string;
  onError?: (err: unknown) => void;
  /**
   * Limits through a {@link LeasedMeter}, which serves a busy key's steps from leases. Not the
   * default: on keys far below their limit (every key at the shipped limits) its rate leases
   * are single tokens, and side by side it cost the gateway 156 µs/req against the exact
   * meter's 118 (`pnpm bench`, row k; docs/design.md "Leased metering").
   */
  leasedLimits?: boolean;
}): Stores {
  const prefix = opts.prefix ?? "phaselock:";
  if (!opts.redisUrl) {
    const bus = new MemoryBus();
    const rateLimiter = new MemoryRateLimiter();
    const recordQuota = new MemoryRecordQuota();
    return {
      kind: "memory",
      bus,
      rateLimiter,
      recordQuota,
      meter: composeMeter(rateLimiter, recordQuota),
      ping: async () => {},
      close: () => bus.close(),
    };
  }
  // Concurrent requests' limit scripts leave in one write per event-loop turn: on loopback TCP
  // each write is a costly syscall, and a busy gateway has many requests in flight.
  const redis = createRedisClient(opts.redisUrl, { enableAutoPipelining: true });
  redis.on("error", (err: unknown) => opts.onError?.(err));
  const bus = new RedisBus({ url: opts.redisUrl, prefix, onError: opts.onError });
  const rateLimiter = new RedisRateLimiter({ redis, prefix: `${prefix}rl:` });
  const recordQuota = new RedisRecordQuota({ redis, prefix: `${prefix}rq:` });
  const leased = opts.leasedLimits
    ? new LeasedMeter({
        redis,
        ratePrefix: `${prefix}rl:`,
        quotaPrefix: `${prefix}rq:`,
        onError: opts.onError,
      })
    : undefined;
  // One script over several limiter names would cross hash slots on a cluster (CROSSSLOT): there,
  // each name's step is its own call, still atomic per key.
  const meter: Meter =
    leased ??
    (isCluster(redis)
      ? composeMeter(rateLimiter, recordQuota)
      : new RedisMeter({ redis: redis as Redis, ratePrefix: `${prefix}rl:`, quotaPrefix: `${prefix}rq:` }));
  return {
    kind: "redis",
    bus,
    rateLimiter,
    recordQuota,
    meter,
    ping: async () => {
      await redis.ping();
    },
    close: async () => {
      // Records admitted from leases are committed, unused tokens and slots given back.
      await leased?.close().catch((err: unknown) => opts.onError?.(err));
      await bus.close();
      redis.disconnect();
    },
  };
}
