import type { ChangeBus } from "./bus.ts";
import { MemoryBus } from "./bus.ts";
import { LeasedMeter } from "./leased-meter.ts";
import { composeMeter, type Meter } from "./metering.ts";
import { MemoryRateLimiter, type RateLimiter, RedisRateLimiter } from "./rate-limit.ts";
import { MemoryRecordQuota, type RecordQuota, RedisRecordQuota } from "./record-quota.ts";
import { RedisBus } from "./redis-bus.ts";
import { createRedisClient } from "./redis-client.ts";

/** The shared state of a deployment: the change feed and the counters behind limits. */
export interface Stores {
  kind: "redis" | "memory";
  bus: ChangeBus;
  rateLimiter: RateLimiter;
  recordQuota: RecordQuota;
  /**
   * a request's limits in one store call, over the same counters: on Redis a {@link LeasedMeter}
   * (at most one round trip, none for a hot key while its lease lasts)
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
  const meter = new LeasedMeter({
    redis,
    ratePrefix: `${prefix}rl:`,
    quotaPrefix: `${prefix}rq:`,
    onError: opts.onError,
  });
  return {
    kind: "redis",
    bus,
    rateLimiter,
    recordQuota,
    // One script per key, so the same meter serves one Redis and a Redis Cluster (no CROSSSLOT).
    meter,
    ping: async () => {
      await redis.ping();
    },
    close: async () => {
      // Records admitted from leases are committed, unused tokens and slots given back.
      await meter.close().catch((err: unknown) => opts.onError?.(err));
      await bus.close();
      redis.disconnect();
    },
  };
}
