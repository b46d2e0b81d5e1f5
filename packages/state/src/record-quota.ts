import { type RedisClient, taggedKey } from "./redis-client.ts";
import { integers } from "./script-reply.ts";

export interface QuotaRule {
  /** Distinct records allowed per window. */
  limit: number;
  windowMs: number;
}

export interface QuotaDecision {
  allowed: boolean;
  /** Distinct records counted in the current window (including this one when allowed). */
  count: number;
}

/**
 * Counts the distinct record ids read under a key per fixed window (`floor(now / windowMs)`), so
 * re-reading a record already counted is free while reading many different ones is capped.
 * Throws when the store fails; callers fail closed.
 */
export interface RecordQuota {
  admit(key: string, recordId: string, rule: QuotaRule, now: Date): Promise<QuotaDecision>;
  /** Distinct records counted under `key` in the current window (nothing is added). */
  count(key: string, rule: QuotaRule, now: Date): Promise<number>;
}

/** The fixed window `now` falls in, and how long until it ends; throws on a bad rule. */
export function windowOf(rule: QuotaRule, now: Date): { index: number; endsInMs: number } {
  const ok = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!ok(rule.limit) || !ok(rule.windowMs)) {
    throw new RangeError("quota rule needs positive integer limit and windowMs");
  }
  const nowMs = now.getTime();
  const index = Math.floor(nowMs / rule.windowMs);
  return { index, endsInMs: (index + 1) * rule.windowMs - nowMs };
}

export interface MemoryRecordQuotaOptions {
  /** Most keys held; beyond it, expired windows are pruned, then the least recently used. */
  maxKeys?: number;
}

/** In-process {@link RecordQuota} for the single-instance setup. */
export class MemoryRecordQuota implements RecordQuota {
  readonly #entries = new Map<string, { expiresAt: number; ids: Set<string> }>();
  readonly #maxKeys: number;

  constructor(opts: MemoryRecordQuotaOptions = {}) {
    this.#maxKeys = opts.maxKeys ?? 100_000;
  }

  get size(): number {
    return this.#entries.size;
  }

  async count(key: string, rule: QuotaRule, now: Date): Promise<number> {
    const { index } = windowOf(rule, now);
    const entry = this.#entries.get(`${index}:${key}`);
    return entry && entry.expiresAt > now.getTime() ? entry.ids.size : 0;
  }

  async admit(key: string, recordId: string, rule: QuotaRule, now: Date): Promise<QuotaDecision> {
    const { index, endsInMs } = windowOf(rule, now);
    const nowMs = now.getTime();
    // The window is part of the key, as in Redis: a clock stepping back finds its old window.
    const mapKey = `${index}:${key}`;
    let entry = this.#entries.get(mapKey);
    if (entry?.ids.has(recordId)) return { allowed: true, count: entry.ids.size };
    if (entry && entry.ids.size >= rule.limit) return { allowed: false, count: entry.ids.size };
    if (!entry) entry = { expiresAt: nowMs + endsInMs, ids: new Set() };
    entry.ids.add(recordId);
    this.#entries.delete(mapKey);
    this.#entries.set(mapKey, entry);
    this.#prune(nowMs);
    return { allowed: true, count: entry.ids.size };
  }

  #prune(nowMs: number): void {
    let budget = 2; // a couple per call keeps expired windows from piling up
    for (const [key, entry] of this.#entries) {
      const over = this.#entries.size > this.#maxKeys;
      if (!over && (budget-- <= 0 || entry.expiresAt > nowMs)) break;
      this.#entries.delete(key);
    }
  }
}

/**
 * One quota step as a Lua function, `quota(key, recordId, limit, ttlMs)` → {allowed, count}.
 * Shared by this quota's script and the one-round-trip metering script.
 */
export const QUOTA_STEP_LUA = `
local function quota(key, id, limit, ttl)
  if redis.call('SISMEMBER', key, id) == 1 then
    return {1, redis.call('SCARD', key)}
  end
  local count = redis.call('SCARD', key)
  if count >= limit then
    return {0, count}
  end
  redis.call('SADD', key, id)
  redis.call('PEXPIRE', key, ttl)
  return {1, count + 1}
end
`;

// KEYS[1] the window's set; ARGV recordId, limit, ttlMs. Returns {allowed, count}.
const QUOTA_LUA = `${QUOTA_STEP_LUA}
return quota(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3])
`;

type WithQuota = RedisClient & {
  phaselockQuota(key: string, recordId: string, limit: number, ttlMs: number): Promise<unknown>;
};

export interface RedisRecordQuotaOptions {
  redis: RedisClient;
  /** Prepended to every key, e.g. `phaselock:rq:`. */
  prefix: string;
}

/**
 * {@link RecordQuota} shared by every gateway: one Redis set per key and window, checked and
 * added to by one atomic Lua script. The window comes from the caller's clock; the set expires
 * when its window ends.
 */
export class RedisRecordQuota implements RecordQuota {
  readonly #redis: WithQuota;
  readonly #prefix: string;

  constructor(opts: RedisRecordQuotaOptions) {
    opts.redis.defineCommand("phaselockQuota", { numberOfKeys: 1, lua: QUOTA_LUA });
    this.#redis = opts.redis as WithQuota;
    this.#prefix = opts.prefix;
  }

  async count(key: string, rule: QuotaRule, now: Date): Promise<number> {
    const { index } = windowOf(rule, now);
    return this.#redis.scard(taggedKey(this.#prefix, key, `:${index}`));
  }

  async admit(key: string, recordId: string, rule: QuotaRule, now: Date): Promise<QuotaDecision> {
    const { index, endsInMs } = windowOf(rule, now);
    const reply = await this.#redis.phaselockQuota(
      taggedKey(this.#prefix, key, `:${index}`),
      recordId,
      rule.limit,
      endsInMs,
    );
    const [allowed, count] = integers(reply, 2);
    return { allowed: allowed === 1, count: count! };
  }
}
