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
import { integers, MAX_SCRIPT_ARGS } from "./script-reply.ts";

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

// One call for a batch of meter operations, run in order as separate scripts would be (and
// atomically, which separate scripts are not). KEYS: every operation's keys, in order. ARGV[1]:
// the number of operations; then per operation its kind and key count, and
//   check ('c'): number of rate keys, nowMs, then limit and windowMs per rate key (its keys: the
//     rate keys, then the count keys). Reply {denied step (1-based, 0 none), remaining,
//     retryAfterMs, counts… (only when none denied)}.
//   admit ('a'): recordId, then limit and ttlMs per key (its keys: the windows' sets). Reply
//     {refused step (1-based, 0 none)}.
// Returns one reply per operation, {-1} for one that failed in Redis (the others still run).
const BATCH_LUA = `${GCRA_STEP_LUA}
${QUOTA_STEP_LUA}
local function check(k, nk, a)
  local nr, now = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  for i = 1, nr do
    local g = gcra(KEYS[k + i], tonumber(ARGV[a + 2 * i]), tonumber(ARGV[a + 1 + 2 * i]), now)
    if g[1] == 0 then return {i, g[2], g[3]} end
  end
  local r = {0, 0, 0}
  for i = nr + 1, nk do r[#r + 1] = redis.call('SCARD', KEYS[k + i]) end
  return r
end
local function admit(k, nk, a)
  local id = ARGV[a]
  for i = 1, nk do
    local q = quota(KEYS[k + i], id, tonumber(ARGV[a - 1 + 2 * i]), ARGV[a + 2 * i])
    if q[1] == 0 then return {i} end
  end
  return {0}
end
local a, k = 2, 0
local out = {}
for o = 1, tonumber(ARGV[1]) do
  local kind, nk = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local fn, span
  if kind == 'c' then
    fn, span = check, 2 + 2 * tonumber(ARGV[a])
  elseif kind == 'a' then
    fn, span = admit, 1 + 2 * nk
  else
    return redis.error_reply('unknown meter operation')
  end
  -- One operation's error is its own (its caller fails closed), as with a script per call.
  local ok, r = pcall(fn, k, nk, a)
  if ok then out[o] = r else out[o] = {-1} end
  a = a + span
  k = k + nk
end
return out
`;

/** The script's command name: the stores' client leaves it out of its auto-pipelining. */
export const METER_BATCH_COMMAND = "phaselockMeterBatch";

type WithMeter = Redis & {
  [METER_BATCH_COMMAND](numKeys: number, ...args: (string | number)[]): Promise<unknown>;
};

interface Operation {
  keys: string[];
  /** kind, key count, then the operation's own arguments */
  args: (string | number)[];
  resolve(reply: unknown): void;
  reject(err: unknown): void;
}

export interface RedisMeterOptions {
  redis: Redis;
  /** the {@link RedisRateLimiter}'s prefix, e.g. `phaselock:rl:` */
  ratePrefix: string;
  /** the {@link RedisRecordQuota}'s prefix, e.g. `phaselock:rq:` */
  quotaPrefix: string;
}

/**
 * {@link Meter} over one Redis server, over the same keys as {@link RedisRateLimiter} and
 * {@link RedisRecordQuota}. Calls are batched: at most one script call is in flight, and every
 * call made meanwhile (or in the same event-loop turn) leaves together in the next one, run in
 * order inside one atomic script (EVALSHA). A lone call costs one round trip as before; a busy
 * gateway sends one command, one write and one reply for many requests' steps, where ioredis's
 * per-command work and a loopback write each were a large share of a request's CPU. Decisions
 * are those of the same calls made one by one in that order. Its keys span hash slots (one tag
 * per limiter name), so it is for a single Redis (or a primary with replicas).
 */
export class RedisMeter implements Meter {
  readonly #redis: WithMeter;
  readonly #rate: string;
  readonly #quota: string;
  #queue: Operation[] = [];
  #inFlight = false;
  #scheduled = false;

  constructor(opts: RedisMeterOptions) {
    opts.redis.defineCommand(METER_BATCH_COMMAND, { lua: BATCH_LUA });
    this.#redis = opts.redis as WithMeter;
    this.#rate = opts.ratePrefix;
    this.#quota = opts.quotaPrefix;
  }

  async check(rates: RateStep[], counts: QuotaStep[], now: Date): Promise<MeterDecision> {
    const keys: string[] = [];
    const args: (string | number)[] = ["c", rates.length + counts.length, rates.length, now.getTime()];
    for (const r of rates) {
      checkRule(r.rule);
      keys.push(taggedKey(this.#rate, r.key));
      args.push(r.rule.limit, r.rule.windowMs);
    }
    for (const q of counts) keys.push(taggedKey(this.#quota, q.key, `:${windowOf(q.rule, now).index}`));
    const reply = await this.#enqueue(keys, args);
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
    const args: (string | number)[] = ["a", quotas.length, recordId];
    for (const q of quotas) {
      const { index, endsInMs } = windowOf(q.rule, now);
      keys.push(taggedKey(this.#quota, q.key, `:${index}`));
      args.push(q.rule.limit, endsInMs);
    }
    const [step] = integers(await this.#enqueue(keys, args), 1);
    if (step! < 0 || step! > quotas.length) throw new Error("unexpected reply from Redis script");
    return step! === 0 ? null : step! - 1;
  }

  #enqueue(keys: string[], args: (string | number)[]): Promise<unknown> {
    // A Redis that does not answer must not build a queue: past this, calls fail closed at once.
    if (this.#queue.length >= MAX_QUEUED_CALLS) {
      return Promise.reject(new Error("Redis meter: too many calls waiting for Redis"));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ keys, args, resolve, reject });
      this.#schedule();
    });
  }

  /** The next batch leaves once the one in flight has answered, after this event-loop turn. */
  #schedule(): void {
    if (this.#inFlight || this.#scheduled || this.#queue.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#inFlight || this.#queue.length === 0) return;
    let count = 0;
    let size = 1;
    for (const op of this.#queue) {
      const n = op.keys.length + op.args.length;
      if (count > 0 && size + n > MAX_SCRIPT_ARGS) break;
      count++;
      size += n;
    }
    const batch = this.#queue.splice(0, count);
    // Every operation's keys, then the operation count and every operation's arguments: KEYS and
    // ARGV of the script, in one array.
    const argv: (string | number)[] = [];
    for (const op of batch) for (const key of op.keys) argv.push(key);
    const numKeys = argv.length;
    argv.push(batch.length);
    for (const op of batch) for (const arg of op.args) argv.push(arg);
    this.#inFlight = true;
    let sent: Promise<unknown>;
    try {
      sent = this.#redis[METER_BATCH_COMMAND](numKeys, ...argv);
    } catch (err) {
      sent = Promise.reject(err);
    }
    sent.then(
      (reply) => {
        this.#inFlight = false;
        if (!Array.isArray(reply) || reply.length !== batch.length) {
          this.#fail(batch, new Error("unexpected reply from Redis script"));
        } else {
          for (let i = 0; i < batch.length; i++) batch[i]!.resolve(reply[i]);
          this.#schedule();
        }
      },
      (err: unknown) => {
        this.#inFlight = false;
        this.#fail(batch, err);
      },
    );
  }

  /**
   * A batch failed (Redis down, a timeout, a bad reply): its calls and every call waiting behind
   * it fail closed now, rather than wait one more timeout each and then spend tokens for
   * requests long answered.
   */
  #fail(batch: readonly Operation[], err: unknown): void {
    const waiting = this.#queue.splice(0);
    for (const op of batch) op.reject(err);
    for (const op of waiting) op.reject(err);
  }
}

/** Calls waiting for the one in flight, at most (a busy gateway has hundreds). */
const MAX_QUEUED_CALLS = 10_000;

const hasDenial = (reply: unknown): boolean =>
  Array.isArray(reply) && typeof reply[0] === "number" && reply[0] > 0;
