import type { Redis } from "ioredis";
import {
  checkRule,
  GCRA_STEP_LUA,
  type RateDecision,
  type RateLimiter,
  type RateRule,
} from "./rate-limit.ts";
import { QUOTA_STEP_LUA, type QuotaRule, type RecordQuota, windowOf } from "./record-quota.ts";
import { taggedKey } from "./redis-client.ts";
import { integers } from "./script-reply.ts";

export interface RateStep {
  key: string;
  rule: RateRule;
}

export interface QuotaStep {
  key: string;
  rule: QuotaRule;
}

export interface MeterDecision {
  /** the first rate step that refused (the steps after it were not consumed), else `null` */
  denied: { index: number; decision: RateDecision } | null;
  /** when no rate step refused: each quota step's count in its current window, in order */
  counts: number[];
}

/**
 * A request's metering in one call to the store: the rate limits and quota reads before the
 * upstream, the record admissions after it. Same keys and arithmetic as {@link RateLimiter} and
 * {@link RecordQuota} (one counter, however it is reached); over Redis each call is one script,
 * one round trip, however many steps it has. Throws when the store fails; callers fail closed.
 */
export interface Meter {
  /**
   * Consumes `rates` in order, stopping at the first refusal (as separate `consume` calls would);
   * when all allow, reads the count of each of `counts`.
   */
  check(rates: RateStep[], counts: QuotaStep[], now: Date): Promise<MeterDecision>;
  /**
   * Admits `recordId` under each of `quotas` in order, stopping at the first refusal; the index
   * of the step that refused, else `null`.
   */
  admit(quotas: QuotaStep[], recordId: string, now: Date): Promise<number | null>;
}

/** A {@link Meter} made of separate calls: for the in-process stores and any other pair. */
export function composeMeter(rateLimiter: RateLimiter, recordQuota: RecordQuota): Meter {
  return {
    async check(rates, counts, now) {
      for (let i = 0; i < rates.length; i++) {
        const decision = await rateLimiter.consume(rates[i]!.key, rates[i]!.rule, now);
        if (!decision.allowed) return { denied: { index: i, decision }, counts: [] };
      }
      const n: number[] = [];
      for (const q of counts) n.push(await recordQuota.count(q.key, q.rule, now));
      return { denied: null, counts: n };
    },
    async admit(quotas, recordId, now) {
      for (let i = 0; i < quotas.length; i++) {
        const q = await recordQuota.admit(quotas[i]!.key, recordId, quotas[i]!.rule, now);
        if (!q.allowed) return i;
      }
      return null;
    },
  };
}

// KEYS: the rate keys, then the count keys. ARGV: number of rate keys, nowMs, then limit and
// windowMs per rate key. Returns {denied step (1-based, 0 none), remaining, retryAfterMs, counts…}.
const CHECK_LUA = `${GCRA_STEP_LUA}
local nr = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
for i = 1, nr do
  local r = gcra(KEYS[i], tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i]), now)
  if r[1] == 0 then return {i, r[2], r[3]} end
end
local out = {0, 0, 0}
for i = nr + 1, #KEYS do
  out[#out + 1] = redis.call('SCARD', KEYS[i])
end
return out
`;

// KEYS: the windows' sets. ARGV: recordId, then limit and ttlMs per key.
// Returns {refused step (1-based, 0 none)}.
const ADMIT_LUA = `${QUOTA_STEP_LUA}
for i = 1, #KEYS do
  local q = quota(KEYS[i], ARGV[1], tonumber(ARGV[2 * i]), ARGV[2 * i + 1])
  if q[1] == 0 then return {i} end
end
return {0}
`;

type WithMeter = Redis & {
  phaselockMeterCheck(numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  phaselockMeterAdmit(numKeys: number, ...args: (string | number)[]): Promise<unknown>;
};

export interface RedisMeterOptions {
  redis: Redis;
  /** the {@link RedisRateLimiter}'s prefix, e.g. `phaselock:rl:` */
  ratePrefix: string;
  /** the {@link RedisRecordQuota}'s prefix, e.g. `phaselock:rq:` */
  quotaPrefix: string;
}

/**
 * {@link Meter} over one Redis server: each call is one atomic script (EVALSHA) over the same
 * keys as {@link RedisRateLimiter} and {@link RedisRecordQuota}. Its keys span hash slots (one tag
 * per limiter name), so it is for a single Redis (or a primary with replicas). `createStores`
 * uses the {@link LeasedMeter} instead (one script per key, most skipped for a hot key).
 */
export class RedisMeter implements Meter {
  readonly #redis: WithMeter;
  readonly #rate: string;
  readonly #quota: string;

  constructor(opts: RedisMeterOptions) {
    opts.redis.defineCommand("phaselockMeterCheck", { lua: CHECK_LUA });
    opts.redis.defineCommand("phaselockMeterAdmit", { lua: ADMIT_LUA });
    this.#redis = opts.redis as WithMeter;
    this.#rate = opts.ratePrefix;
    this.#quota = opts.quotaPrefix;
  }

  async check(rates: RateStep[], counts: QuotaStep[], now: Date): Promise<MeterDecision> {
    const keys: string[] = [];
    const args: (string | number)[] = [rates.length, now.getTime()];
    for (const r of rates) {
      checkRule(r.rule);
      keys.push(taggedKey(this.#rate, r.key));
      args.push(r.rule.limit, r.rule.windowMs);
    }
    for (const q of counts) keys.push(taggedKey(this.#quota, q.key, `:${windowOf(q.rule, now).index}`));
    const reply = await this.#redis.phaselockMeterCheck(keys.length, ...keys, ...args);
    const [step, remaining, retryAfterMs] = integers(reply, 3 + (hasDenial(reply) ? 0 : counts.length));
    if (step! > 0) {
      if (step! > rates.length) throw new Error("unexpected reply from Redis script");
      return {
        denied: {
          index: step! - 1,
          decision: { allowed: false, remaining: remaining!, retryAfterMs: retryAfterMs! },
        },
        counts: [],
      };
    }
    return { denied: null, counts: (reply as number[]).slice(3) };
  }

  async admit(quotas: QuotaStep[], recordId: string, now: Date): Promise<number | null> {
    const keys: string[] = [];
    const args: (string | number)[] = [recordId];
    for (const q of quotas) {
      const { index, endsInMs } = windowOf(q.rule, now);
      keys.push(taggedKey(this.#quota, q.key, `:${index}`));
      args.push(q.rule.limit, endsInMs);
    }
    const [step] = integers(await this.#redis.phaselockMeterAdmit(keys.length, ...keys, ...args), 1);
    if (step! < 0 || step! > quotas.length) throw new Error("unexpected reply from Redis script");
    return step! === 0 ? null : step! - 1;
  }
}

const hasDenial = (reply: unknown): boolean =>
  Array.isArray(reply) && typeof reply[0] === "number" && reply[0] > 0;
