import type { Redis } from "ioredis";
import type { ChangeBus } from "./bus.ts";
import { MemoryBus } from "./bus.ts";
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
  /** a request's limits in one store call (one Redis round trip), over the same counters */
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
  return {
    kind: "redis",
    bus,
    rateLimiter,
    recordQuota,
    // One script over several limiter names would cross hash slots on a cluster (CROSSSLOT): there,
    // each name's step is its own call, still atomic per key.
    meter: isCluster(redis)
      ? composeMeter(rateLimiter, recordQuota)
      : new RedisMeter({ redis: redis as Redis, ratePrefix: `${prefix}rl:`, quotaPrefix: `${prefix}rq:` }),
    ping: async () => {
      await redis.ping();
    },
    close: async () => {
      await bus.close();
      redis.disconnect();
    },
  };
}
