import type { Redis } from "ioredis";
import type { ChangeBus } from "./bus.ts";
import { MemoryBus } from "./bus.ts";
import { LeasedMeter } from "./leased-meter.ts";
import { composeMeter, METER_BATCH_COMMAND, type Meter, RedisMeter } from "./metering.ts";
import { MemoryRateLimiter, type RateLimiter, RedisRateLimiter } from "./rate-limit.ts";
import { MemoryRecordQuota, type RecordQuota, RedisRecordQuota } from "./record-quota.ts";
import { RedisBus } from "./redis-bus.ts";
import { createRedisClient, isCluster, pingRedis, type RedisClient } from "./redis-client.ts";

/** The shared state of a deployment: the change feed and the counters behind limits. */
export interface Stores {
  kind: "redis" | "memory";
  bus: ChangeBus;
  rateLimiter: RateLimiter;
  recordQuota: RecordQuota;
  /**
   * a request's limits in one store call, over the same counters: on one Redis a
   * {@link RedisMeter} (its calls batched into scripts), on a Cluster the separate calls; with
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
  /** with `leasedLimits`: rate tokens taken ahead too (`LeasedMeterOptions.rateLeases`, off by default) */
  leasedRateTokens?: boolean;
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
  // The exact meter batches its own calls (one in flight): auto-pipelining it too would only hold
  // each batch for one more turn.
  const redis = createRedisClient(opts.redisUrl, {
    enableAutoPipelining: true,
    autoPipeliningIgnoredCommands: [METER_BATCH_COMMAND],
  });
  redis.on("error", (err: unknown) => opts.onError?.(err));
  const bus = new RedisBus({ url: opts.redisUrl, prefix, onError: opts.onError });
  const rateLimiter = new RedisRateLimiter({ redis, prefix: `${prefix}rl:` });
  const recordQuota = new RedisRecordQuota({ redis, prefix: `${prefix}rq:` });
  const meter = redisLimitsMeter({
    redis,
    ratePrefix: `${prefix}rl:`,
    quotaPrefix: `${prefix}rq:`,
    rateLimiter,
    recordQuota,
    leased: opts.leasedLimits,
    rateLeases: opts.leasedRateTokens,
    onError: opts.onError,
  });
  return {
    kind: "redis",
    bus,
    rateLimiter,
    recordQuota,
    meter,
    ping: () => pingRedis(redis),
    close: async () => {
      // Records admitted from leases are committed, unused tokens and slots given back.
      if (meter instanceof LeasedMeter) await meter.close().catch((err: unknown) => opts.onError?.(err));
      await bus.close();
      redis.disconnect();
    },
  };
}

/**
 * The meter over Redis limit stores, as {@link createStores} chooses it: on one Redis a
 * {@link RedisMeter} (its calls batched into scripts), on a Cluster the separate calls of `rateLimiter` and
 * `recordQuota` (one script over several limiter names would cross hash slots: CROSSSLOT), with
 * `leased` a {@link LeasedMeter} on either (close it to commit and give back what it holds).
 */
export function redisLimitsMeter(o: {
  redis: RedisClient;
  ratePrefix: string;
  quotaPrefix: string;
  rateLimiter: RateLimiter;
  recordQuota: RecordQuota;
  leased?: boolean | undefined;
  rateLeases?: boolean | undefined;
  onError?: ((err: unknown) => void) | undefined;
}): Meter {
  if (o.leased) {
    return new LeasedMeter({
      redis: o.redis,
      ratePrefix: o.ratePrefix,
      quotaPrefix: o.quotaPrefix,
      onError: o.onError,
      rateLeases: o.rateLeases === true,
    });
  }
  return isCluster(o.redis)
    ? composeMeter(o.rateLimiter, o.recordQuota)
    : new RedisMeter({ redis: o.redis as Redis, ratePrefix: o.ratePrefix, quotaPrefix: o.quotaPrefix });
}
