import { type RedisClient, taggedKey } from "./redis-client.ts";
import { integers } from "./script-reply.ts";

export interface RateRule {
  /** Requests allowed in a burst, and per window on average. */
  limit: number;
  windowMs: number;
}

export interface RateDecision {
  allowed: boolean;
  /** Requests still allowed right now. */
  remaining: number;
  /** When denied, how long until one more request is allowed; 0 when allowed. */
  retryAfterMs: number;
}

/**
 * GCRA: requests are spaced `windowMs / limit` apart on average, with bursts of up to `limit`.
 * Throws when the store fails; callers fail closed.
 */
export interface RateLimiter {
  consume(key: string, rule: RateRule, now: Date): Promise<RateDecision>;
}

/**
 * The GCRA state is kept as (`at`, `debt`): the theoretical arrival time is `at + debt / limit`.
 * Counting debt in units of 1/limit ms makes the emission interval exactly `windowMs` units, so
 * the arithmetic is in integers and the memory and Lua versions agree to the unit.
 */
interface GcraState {
  at: number;
  debt: number;
}

/** Throws unless the rule has positive integer limit and window (and their product is safe). */
export function checkRule(rule: RateRule): void {
  const ok = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!ok(rule.limit) || !ok(rule.windowMs) || !Number.isSafeInteger(rule.limit * rule.windowMs)) {
    throw new RangeError("rate rule needs positive integer limit and windowMs");
  }
}

/** One GCRA step. `next` is the state to store when allowed. */
function gcra(
  prev: GcraState | undefined,
  rule: RateRule,
  nowMs: number,
): RateDecision & { next: GcraState } {
  const { limit, windowMs } = rule;
  const capacity = limit * windowMs;
  let debt = 0;
  let at = nowMs;
  if (prev) {
    // A clock that steps back earns nothing and never moves the state back.
    const elapsed = Math.max(0, nowMs - prev.at);
    debt = elapsed >= windowMs ? 0 : Math.max(0, prev.debt - elapsed * limit);
    at = Math.max(prev.at, nowMs);
  }
  const after = debt + windowMs;
  if (after > capacity) {
    return {
      allowed: false,
      remaining: 0,
      retryAfterMs: Math.ceil((after - capacity) / limit),
      next: { at, debt },
    };
  }
  return {
    allowed: true,
    remaining: Math.floor((capacity - after) / windowMs),
    retryAfterMs: 0,
    next: { at, debt: after },
  };
}

/** Milliseconds until a state's debt is paid off: after that it is the same as no state. */
const ttlMs = (s: GcraState, limit: number): number => Math.ceil(s.debt / limit);

export interface MemoryRateLimiterOptions {
  /** Most keys held; beyond it, expired keys are pruned, then the least recently used. */
  maxKeys?: number;
}

/** In-process {@link RateLimiter} for the single-instance setup. */
export class MemoryRateLimiter implements RateLimiter {
  readonly #entries = new Map<string, GcraState & { expiresAt: number; seq: number }>();
  readonly #maxKeys: number;
  #seq = 0;

  constructor(opts: MemoryRateLimiterOptions = {}) {
    this.#maxKeys = opts.maxKeys ?? 100_000;
  }

  get size(): number {
    return this.#entries.size;
  }

  async consume(key: string, rule: RateRule, now: Date): Promise<RateDecision> {
    checkRule(rule);
    const nowMs = now.getTime();
    const prev = this.#entries.get(key);
    const { next, ...decision } = gcra(prev && prev.expiresAt > nowMs ? prev : undefined, rule, nowMs);
    if (decision.allowed) {
      const expiresAt = next.at + ttlMs(next, rule.limit);
      if (prev && this.#seq - prev.seq < this.#maxKeys / 2) {
        // A recently moved entry is updated in place: re-inserting on every request made one busy
        // key slow (a Map keeps deleted entries until it rehashes).
        prev.at = next.at;
        prev.debt = next.debt;
        prev.expiresAt = expiresAt;
      } else {
        // Delete first so the map's order stays roughly least recently used first.
        this.#entries.delete(key);
        this.#entries.set(key, { ...next, expiresAt, seq: ++this.#seq });
      }
      this.#prune(nowMs);
    }
    return decision;
  }

  /** Entries are in least-recently-allowed order, which is roughly the order they expire in. */
  #prune(nowMs: number): void {
    let budget = 2; // a couple per call keeps expired entries from piling up
    for (const [key, entry] of this.#entries) {
      const over = this.#entries.size > this.#maxKeys;
      if (!over && (budget-- <= 0 || entry.expiresAt > nowMs)) break;
      this.#entries.delete(key);
    }
  }
}

/**
 * One GCRA step as a Lua function, `gcra(key, limit, window, now)` → {allowed, remaining,
 * retryAfterMs}: the same arithmetic as gcra() above; numbers are doubles in Lua too and stay
 * below 2^53. Shared by this limiter's script and the one-round-trip metering script.
 */
export const GCRA_STEP_LUA = `
local function gcra(key, limit, window, now)
  local capacity = limit * window
  local debt = 0
  local at = now
  local state = redis.call('HMGET', key, 'at', 'debt')
  if state[1] and state[2] then
    local prevAt = tonumber(state[1])
    local elapsed = math.max(0, now - prevAt)
    if elapsed >= window then debt = 0 else debt = math.max(0, tonumber(state[2]) - elapsed * limit) end
    at = math.max(prevAt, now)
  end
  local after = debt + window
  if after > capacity then
    return {0, 0, math.ceil((after - capacity) / limit)}
  end
  redis.call('HSET', key, 'at', string.format('%.0f', at), 'debt', string.format('%.0f', after))
  redis.call('PEXPIRE', key, string.format('%.0f', math.max(1, at - now + math.ceil(after / limit))))
  return {1, math.floor((capacity - after) / window), 0}
end
`;

// KEYS[1] state key; ARGV limit, windowMs, nowMs. Returns {allowed, remaining, retryAfterMs}.
const GCRA_LUA = `${GCRA_STEP_LUA}
return gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
`;

type WithGcra = RedisClient & {
  phaselockGcra(key: string, limit: number, windowMs: number, nowMs: number): Promise<unknown>;
};

export interface RedisRateLimiterOptions {
  redis: RedisClient;
  /** Prepended to every key, e.g. `phaselock:rl:`. */
  prefix: string;
}

/**
 * {@link RateLimiter} shared by every gateway: one atomic Lua script per call (EVALSHA). Time
 * comes from the caller's clock, not Redis `TIME`, so every instance and every test agrees.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #redis: WithGcra;
  readonly #prefix: string;

  constructor(opts: RedisRateLimiterOptions) {
    opts.redis.defineCommand("phaselockGcra", { numberOfKeys: 1, lua: GCRA_LUA });
    this.#redis = opts.redis as WithGcra;
    this.#prefix = opts.prefix;
  }

  async consume(key: string, rule: RateRule, now: Date): Promise<RateDecision> {
    checkRule(rule);
    const reply = await this.#redis.phaselockGcra(
      taggedKey(this.#prefix, key),
      rule.limit,
      rule.windowMs,
      now.getTime(),
    );
    const [allowed, remaining, retryAfterMs] = integers(reply, 3);
    return { allowed: allowed === 1, remaining: remaining!, retryAfterMs: retryAfterMs! };
  }
}
