/**
 * A {@link Meter} over Redis that serves most steps of a hot key from leases Redis granted to this
 * gateway: GCRA tokens taken ahead, quota slots reserved as placeholder members. Leases move WHEN
 * the round trip happens, never a limit: every request admitted here is backed by a token Redis
 * granted, every new record admitted here by a slot Redis reserved. docs/design.md, "Leased
 * metering", says where the invariant comes from.
 */
import { randomBytes } from "node:crypto";
import type { Meter, MeterDecision, QuotaStep, RateStep } from "./metering.ts";
import { checkRule, type RateDecision, type RateRule } from "./rate-limit.ts";
import { type QuotaRule, windowOf } from "./record-quota.ts";
import { isCluster, type RedisClient, taggedKey } from "./redis-client.ts";
import { integers, MAX_SCRIPT_ARGS } from "./script-reply.ts";

/** How long a lease may be used, measured on the clock passed in. */
export const LEASE_LIFE_MS = 250;
/** How often leased record admissions are committed and expired leases given back. */
export const LEASE_FLUSH_MS = 100;
/** A lease is at most this fraction of a limit (and at least 1): small limits stay exact. */
export const LEASE_CAP_DIVISOR = 20;

/**
 * Records remembered per window as admitted here (free to read again without a round trip);
 * beyond it the memo starts afresh: a record read again then takes a slot, which its commit frees.
 */
const MAX_REMEMBERED = 10_000;

/**
 * The largest lease whatever the limit. A lease's records and placeholders travel as arguments of
 * one script call: ioredis spreads them onto the stack, and past ~100,000 arguments the call
 * throws synchronously, which inside its auto-pipeline left a callback without a reply and
 * crashed the gateway (`pnpm bench` with a campaign limit of millions, 2026-12-01).
 */
export const MAX_LEASE = 500;

// A tick's steps go out in as many scripts as keep each under MAX_SCRIPT_ARGS (one step has at
// most ~2·MAX_LEASE + 16 arguments).
export { MAX_SCRIPT_ARGS };

/** The largest lease for a limit: `max(1, min(MAX_LEASE, floor(limit / 20)))`. */
export const leaseCap = (limit: number): number =>
  Math.max(1, Math.min(MAX_LEASE, Math.floor(limit / LEASE_CAP_DIVISOR)));

// One GCRA key. KEYS[1] the state hash. ARGV: limit, windowMs, nowMs, want, the new lease's hold
// field, lifeMs, then the previous lease's refund: unused units (k * windowMs), its debt after the
// grant, the key's time `at` then, its hold field, the key's `ref` then. Gives the refund back
// first, then takes up to `want` tokens in one GCRA step (0 → refund only). Returns {granted,
// remaining, retryAfterMs, debt, at, ref}.
//
// Tokens beyond the first are "held" (field h:<meterId>:<n> = "units:until:top:at:ref": the debt
// right after the grant, the key's time then, and field `ref`, the units ever given back on the
// key, then). They are granted only while the key's debt, less every hold that can still be given
// back (live ones in full, expired ones for what their refund could still take) and one lease life
// of refill, stays positive: then the exact meter (which would see held tokens as still in its
// bucket) never fills up while they are held, so it would have admitted each of them whenever one
// is used here. The debt is paid off oldest unit first; a refund takes back only units of its hold
// not paid off yet: the hold's top, less what was paid off since the grant (on the key's clock
// `at`, never a caller's that is behind it) and less everything given back since (units given back
// from beneath it move it down), so it never lowers the debt below what the exact meter would hold
// without those tokens.
const LEASE_RATE_LUA_FN = `
local function lease_rate(key, A)
  local limit = tonumber(A[1])
  local window = tonumber(A[2])
  local now = tonumber(A[3])
  local want = tonumber(A[4])
  local hold = A[5]
  local life = tonumber(A[6])
  local refund = tonumber(A[7])
  local capacity = limit * window
  local debt = 0
  local at = now
  local exists = false
  local state = redis.call('HMGET', key, 'at', 'debt', 'ref')
  if state[1] and state[2] then
    exists = true
    local prevAt = tonumber(state[1])
    local elapsed = math.max(0, now - prevAt)
    if elapsed >= window then debt = 0 else debt = math.max(0, tonumber(state[2]) - elapsed * limit) end
    at = math.max(prevAt, now)
  end
  -- units ever given back on this key (what a refund took out from under a later hold)
  local ref = tonumber(state[3]) or 0
  -- A hold "units:until:top:grantAt:ref" -> units, until, and what of its units the debt still
  -- holds: the debt is paid off oldest first, and its top was at \`top\` when granted; since then
  -- (key time, \`at\`) it paid off elapsed * limit and lost what was given back beneath it (at
  -- most everything given back since).
  -- A hold in any other form (another version's, or written by hand) counts as the whole
  -- capacity, for as long as the key lives: no lease is granted on its strength.
  local function unpaid(v)
    local u, untl, top, g, r0 = string.match(v or '', '^(%d+):(%d+):(%d+):(%d+):(%d+)$')
    if not u then return capacity, now + 1, capacity end
    return tonumber(u), tonumber(untl),
      tonumber(top) - math.max(0, at - tonumber(g)) * limit - (ref - tonumber(r0))
  end
  if A[10] ~= '' then redis.call('HDEL', key, A[10]) end
  -- \`ref\` only grows while the key lives: one below the lease's proves the key expired since
  -- (its holds and \`ref\` gone with it) and was made anew. That copy owes the old lease
  -- nothing, and the old \`ref\` would lift the cap instead of lowering it.
  local keyRef = tonumber(A[11]) or 0
  if refund > 0 and exists and ref >= keyRef then
    local r = math.min(refund, tonumber(A[8]) - math.max(0, at - tonumber(A[9])) * limit
      - (ref - keyRef))
    if r > 0 then
      debt = math.max(0, debt - r)
      ref = ref + r
    end
  end
  local function store()
    redis.call('HSET', key, 'at', string.format('%.0f', at), 'debt', string.format('%.0f', debt),
      'ref', string.format('%.0f', ref))
    redis.call('PEXPIRE', key, string.format('%.0f', math.max(1, at - now + math.ceil(debt / limit))))
  end
  local fit = math.floor((capacity - debt) / window)
  if want < 1 or fit < 1 then
    if exists then store() end
    if want < 1 then return {0, math.max(0, fit), 0, debt, at, ref} end
    return {0, 0, math.ceil((debt + window - capacity) / limit), debt, at, ref}
  end
  local k = 1
  if want > 1 then
    local others = 0
    local fields = redis.call('HGETALL', key)
    for i = 1, #fields, 2 do
      local f = fields[i]
      if string.sub(f, 1, 2) == 'h:' then
        local u, untl, left = unpaid(fields[i + 1])
        -- Expired but not given back yet: what its refund can still take off the debt.
        local held = untl > now and u or math.min(u, left)
        if held > 0 then others = others + held else redis.call('HDEL', key, f) end
      end
    end
    if debt + window >= others + life * limit then k = math.min(want, fit) end
  end
  debt = debt + k * window
  if k > 1 then
    redis.call('HSET', key, hold, string.format('%.0f', (k - 1) * window) .. ':' .. string.format('%.0f', now + life)
      .. ':' .. string.format('%.0f', debt) .. ':' .. string.format('%.0f', at) .. ':' .. string.format('%.0f', ref))
  end
  store()
  return {k, math.floor((capacity - debt) / window), 0, debt, at, ref}
end
`;

// One quota window. KEYS[1] the window's set. ARGV: ttlMs, limit, op ("admit", "count" or
// "sync"), recordId, want, placeholder prefix, first placeholder number, nCommit, then nCommit
// (record, placeholder) pairs, nRelease, then nRelease placeholders.
// Commits records admitted here in place of their placeholders (a record already a member just
// frees its slot), releases unused placeholders, then does `op` as the exact quota step would and
// reserves up to `want` more slots. Returns {allowed, count before the new slots, slots reserved}.
const LEASE_QUOTA_LUA_FN = `
local function lease_quota(key, A)
  local ttl = A[1]
  local limit = tonumber(A[2])
  local op = A[3]
  local id = A[4]
  local want = tonumber(A[5])
  local prefix = A[6]
  local seq = tonumber(A[7])
  local nc = tonumber(A[8])
  local written = false
  for i = 0, nc - 1 do
    redis.call('SREM', key, A[10 + 2 * i])
    redis.call('SADD', key, A[9 + 2 * i])
    written = true
  end
  local base = 9 + 2 * nc
  local nr = tonumber(A[base])
  for i = 1, nr do
    redis.call('SREM', key, A[base + i])
  end
  local allowed = 1
  if op == 'admit' then
    if redis.call('SISMEMBER', key, id) == 0 then
      if redis.call('SCARD', key) >= limit then
        allowed = 0
      else
        redis.call('SADD', key, id)
        written = true
      end
    end
  end
  local count = redis.call('SCARD', key)
  local granted = 0
  if allowed == 1 and want > 0 and op ~= 'sync' then
    granted = math.max(0, math.min(want, limit - count))
    for i = 0, granted - 1 do
      redis.call('SADD', key, prefix .. string.format('%.0f', seq + i))
      written = true
    end
  end
  if written then redis.call('PEXPIRE', key, ttl) end
  return {allowed, count, granted}
end
`;

const LEASE_RATE_LUA = `${LEASE_RATE_LUA_FN}
return lease_rate(KEYS[1], ARGV)
`;
const LEASE_QUOTA_LUA = `${LEASE_QUOTA_LUA_FN}
return lease_quota(KEYS[1], ARGV)
`;

// Several steps in one script, for one Redis (keys on any slot): KEYS the steps' keys; ARGV per
// step its kind ("r" rate, "q" quota), its number of arguments, then those. Returns each step's
// reply, in order; the steps run one after the other, as separate scripts would.
const LEASE_BATCH_LUA = `${LEASE_RATE_LUA_FN}${LEASE_QUOTA_LUA_FN}
local out = {}
local p = 1
for i = 1, #KEYS do
  local kind = ARGV[p]
  local n = tonumber(ARGV[p + 1])
  local a = {}
  for j = 1, n do a[j] = ARGV[p + 1 + j] end
  p = p + 2 + n
  if kind == 'r' then out[i] = lease_rate(KEYS[i], a) else out[i] = lease_quota(KEYS[i], a) end
end
return out
`;

type WithLeases = RedisClient & {
  phaselockLeaseRate(key: string, ...args: (string | number)[]): Promise<unknown>;
  phaselockLeaseQuota(key: string, ...args: (string | number)[]): Promise<unknown>;
  phaselockLeaseBatch(numKeys: number, ...args: (string | number)[]): Promise<unknown>;
};

type Arg = string | number;
interface QueuedStep {
  kind: "r" | "q";
  key: string;
  args: Arg[];
  resolve(reply: unknown): void;
  reject(err: unknown): void;
}

interface RateLease {
  rule: RateRule;
  /** tokens granted and not yet used here */
  tokens: number;
  grantedAt: number;
  expiresAt: number;
  /** the key's debt right after the grant (caps the refund) */
  debtAfter: number;
  /** the key's time (`at`) and units given back on it (`ref`) right after the grant (cap it too) */
  keyAt: number;
  keyRef: number;
  /** Redis's remaining right after the grant */
  remaining: number;
  /** the hash field holding this lease's extra tokens */
  hold: string;
  /** the next lease's size */
  size: number;
}

interface QuotaLease {
  rule: QuotaRule;
  /** ms epoch when the window ends (its set expires then) */
  windowEndsAt: number;
  /** placeholders reserved for this gateway and not used yet */
  free: string[];
  expiresAt: number;
  grantedAt: number;
  granted: number;
  /** records admitted in this window through this gateway (committed or pending) */
  admitted: Set<string>;
  /** records admitted here in place of a placeholder, not yet committed */
  pending: Array<[record: string, placeholder: string]>;
  /** distinct records counted at the last round trip, plus those admitted here since */
  known: number;
  size: number;
}

export interface LeasedMeterOptions {
  redis: RedisClient;
  /** the {@link RedisRateLimiter}'s prefix, e.g. `phaselock:rl:` */
  ratePrefix: string;
  /** the {@link RedisRecordQuota}'s prefix, e.g. `phaselock:rq:` */
  quotaPrefix: string;
  /** names this gateway's holds and placeholders (default: 96 random bits) */
  meterId?: string;
  /** default {@link LEASE_LIFE_MS} */
  leaseLifeMs?: number;
  /** background commit interval (default {@link LEASE_FLUSH_MS}); 0 for none: call `flush()` */
  flushMs?: number;
  /** a background commit failed (every lease was dropped) */
  onError?: (err: unknown) => void;
  /**
   * Take rate tokens ahead of requests (default false: every rate step is the exact GCRA step,
   * one round trip; quota slots are leased either way). Fuzzed across gateways against the exact
   * meter since the three refund faults a CI run found were fixed (2026-12-02; docs/design.md
   * "Leased metering"), with every gateway on one clock: a hold's expiry is judged on each
   * caller's clock, so a gateway whose clock runs ahead may count another's hold as expired early.
   * Off until that is bounded; a rolling deploy from before the fix must not turn it on (the old
   * script deletes the new holds as unreadable).
   */
  rateLeases?: boolean;
}

/**
 * {@link Meter} over one Redis or a Redis Cluster: one script per key (Cluster-safe; a call's
 * scripts go out together), skipped for a hot key while a lease lasts. Fails closed: when the
 * client is not ready, or a call or commit fails, every lease is dropped at once and the call
 * throws as the exact meter would.
 */
export class LeasedMeter implements Meter {
  readonly #redis: WithLeases;
  readonly #rate: string;
  readonly #quota: string;
  readonly #id: string;
  readonly #life: number;
  readonly #onError: ((err: unknown) => void) | undefined;
  readonly #rateLeases: boolean;
  readonly #rates = new Map<string, RateLease>();
  /** by the window's set key (window index included) */
  readonly #quotas = new Map<string, QuotaLease>();
  readonly #timer: ReturnType<typeof setInterval> | undefined;
  #seq = 0;
  /** bumped by every drop: a grant that lands after one is not installed */
  #epoch = 0;
  /** the latest `now` passed in: the background flush decides by it, never by Date.now() */
  #lastNow = 0;
  #flushing: Promise<void> | undefined;
  #closed = false;
  readonly #drop = () => this.dropLeases();
  /** one Redis: the steps asked for in one tick go out as one script (a Cluster: one per key) */
  readonly #batching: boolean;
  #queue: QueuedStep[] = [];

  constructor(opts: LeasedMeterOptions) {
    opts.redis.defineCommand("phaselockLeaseRate", { numberOfKeys: 1, lua: LEASE_RATE_LUA });
    opts.redis.defineCommand("phaselockLeaseQuota", { numberOfKeys: 1, lua: LEASE_QUOTA_LUA });
    opts.redis.defineCommand("phaselockLeaseBatch", { lua: LEASE_BATCH_LUA });
    this.#batching = !isCluster(opts.redis);
    this.#redis = opts.redis as WithLeases;
    this.#rate = opts.ratePrefix;
    this.#quota = opts.quotaPrefix;
    this.#id = opts.meterId ?? randomBytes(12).toString("base64url");
    if (this.#id.includes(":")) throw new TypeError("a meter id has no colon");
    this.#life = opts.leaseLifeMs ?? LEASE_LIFE_MS;
    this.#onError = opts.onError;
    this.#rateLeases = opts.rateLeases === true;
    // A lost connection drops every lease at once, before any request can use one.
    opts.redis.on("close", this.#drop);
    opts.redis.on("end", this.#drop);
    const flushMs = opts.flushMs ?? LEASE_FLUSH_MS;
    if (flushMs > 0) {
      this.#timer = setInterval(() => {
        this.flush().catch((err: unknown) => this.#onError?.(err));
      }, flushMs);
      this.#timer.unref();
    }
  }

  /** What this gateway holds now: unused rate tokens, free quota slots, uncommitted records. */
  get held(): { tokens: number; slots: number; pending: number } {
    let tokens = 0;
    let slots = 0;
    let pending = 0;
    for (const l of this.#rates.values()) tokens += l.tokens;
    for (const l of this.#quotas.values()) {
      slots += l.free.length;
      pending += l.pending.length;
    }
    return { tokens, slots, pending };
  }

  /** Forgets every lease: nothing is served locally until Redis grants again. */
  dropLeases(): void {
    this.#epoch++;
    this.#rates.clear();
    this.#quotas.clear();
  }

  async check(rates: RateStep[], counts: QuotaStep[], now: Date): Promise<MeterDecision> {
    const nowMs = this.#touch(now);
    for (const r of rates) checkRule(r.rule);
    const windows = counts.map((q) => this.#windowKey(q, now));
    this.#ensureReady();
    // Tokens of live leases are taken at once (no await in between), so concurrent calls never
    // share one; every other step goes to Redis, all in one go.
    const local = rates.map((r) => {
      const lease = this.#liveRate(r.key, r.rule, nowMs);
      if (lease) lease.tokens--;
      return lease;
    });
    const rateAsks = rates.map((r, i) => (local[i] ? undefined : this.#leaseRate(r.key, r.rule, nowMs)));
    const countAsks = counts.map((q, i) =>
      this.#hasSlot(windows[i]!.redisKey, q.rule, nowMs)
        ? undefined
        : this.#leaseQuota(q.rule, windows[i]!, "count", "", nowMs),
    );
    const [granted, asked] = await this.#all(rateAsks, countAsks);
    let denied: MeterDecision["denied"] = null;
    const giveBack: Promise<void>[] = [];
    for (let i = 0; i < rates.length; i++) {
      const lease = local[i];
      const ask = granted[i];
      if (denied) {
        // Not consumed, as after a refusal of the exact meter: back to the lease, and a lease
        // just taken for this request goes back to Redis at once.
        if (lease) lease.tokens++;
        else if (ask?.lease) {
          ask.lease.tokens++;
          giveBack.push(this.#refundRate(rates[i]!.key, ask.lease, nowMs));
        }
        continue;
      }
      const decision = lease ? this.#used(lease, nowMs) : ask!.decision;
      if (!decision.allowed) denied = { index: i, decision };
    }
    // Slots reserved for counts that a refusal left unread stay this gateway's lease (placeholders
    // Redis counts: stricter for at most a lease life, and a refused link hammering costs no
    // extra round trips to give them back).
    const out: number[] = [];
    if (!denied) {
      for (let i = 0; i < counts.length; i++) {
        const known = asked[i]?.count ?? this.#quotas.get(windows[i]!.redisKey)?.known;
        // A lease dropped meanwhile (the connection lost) is no count: fail closed.
        if (known === undefined) throw new Error("quota lease lost");
        out.push(known);
      }
    }
    if (giveBack.length > 0) await this.#guard(Promise.all(giveBack));
    return denied ? { denied, counts: [] } : { denied: null, counts: out };
  }

  async admit(quotas: QuotaStep[], recordId: string, now: Date): Promise<number | null> {
    const nowMs = this.#touch(now);
    const windows = quotas.map((q) => this.#windowKey(q, now));
    this.#ensureReady();
    // In order, and each step only after the one before allowed (a refusal stops the rest).
    for (let i = 0; i < quotas.length; i++) {
      const q = quotas[i]!;
      const w = windows[i]!;
      const lease = this.#liveQuota(w.redisKey, q.rule, nowMs);
      if (lease?.admitted.has(recordId)) continue;
      if (lease && lease.free.length > 0 && nowMs < lease.expiresAt) {
        const slot = lease.free.pop()!;
        remember(lease.admitted, recordId);
        lease.pending.push([recordId, slot]);
        lease.known++;
        continue;
      }
      // No slot here: the exact step (a record seen through another gateway is still free).
      const { allowed } = await this.#guard(this.#leaseQuota(q.rule, w, "admit", recordId, nowMs));
      if (!allowed) return i;
    }
    return null;
  }

  /**
   * Commits the records admitted here and gives back expired leases (every lease with `all`), by
   * the latest clock passed in. A failure drops every lease and rethrows.
   */
  async flush(opts: { all?: boolean } = {}): Promise<void> {
    while (this.#flushing) await this.#flushing.catch(() => {});
    const run = this.#flushOnce(opts.all === true);
    this.#flushing = run;
    try {
      await run;
    } finally {
      this.#flushing = undefined;
    }
  }

  /** Stops the timer, commits every record admitted here and gives back every lease. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#timer) clearInterval(this.#timer);
    try {
      if (this.#redis.status === "ready") await this.flush({ all: true });
    } finally {
      this.#closed = true;
      this.dropLeases();
      this.#redis.off("close", this.#drop);
      this.#redis.off("end", this.#drop);
    }
  }

  async #flushOnce(all: boolean): Promise<void> {
    if (this.#rates.size === 0 && this.#quotas.size === 0) return;
    this.#ensureReady();
    const now = this.#lastNow;
    const work: Promise<void>[] = [];
    for (const [key, lease] of this.#rates) {
      const over = now >= lease.expiresAt;
      if (lease.tokens > 0 && (all || over)) work.push(this.#refundRate(key, lease, now));
      else if (lease.tokens === 0 && over) this.#rates.delete(key);
    }
    for (const [key, lease] of this.#quotas) {
      const over = now >= lease.expiresAt;
      // A live lease's records ride along with its window's next round trip (one script per key,
      // not one more per flush); they are committed here once it ends, with its unused slots.
      if ((lease.pending.length > 0 || lease.free.length > 0) && (all || over)) {
        work.push(this.#syncQuota(key, lease, now, true));
      } else if (now >= lease.windowEndsAt || (over && now >= lease.expiresAt + this.#life)) {
        this.#quotas.delete(key);
      }
    }
    await this.#guard(Promise.all(work));
  }

  #touch(now: Date): number {
    if (this.#closed) throw new Error("leased meter closed");
    const ms = now.getTime();
    if (ms > this.#lastNow) this.#lastNow = ms;
    return ms;
  }

  #ensureReady(): void {
    // Fail closed: what was granted on a connection that is not ready is not served. A socket
    // ended on our side (disconnect, shutdown) is not writable before ioredis reports the close.
    const redis = this.#redis;
    if (redis.status !== "ready" || (!isCluster(redis) && redis.stream?.writable === false)) {
      this.dropLeases();
    }
  }

  async #guard<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      this.dropLeases();
      throw err;
    }
  }

  /** Waits for every ask; when one failed, drops every lease and throws its error. */
  async #all<A, B>(
    a: Array<Promise<A> | undefined>,
    b: Array<Promise<B> | undefined>,
  ): Promise<[Array<A | undefined>, Array<B | undefined>]> {
    const [ra, rb] = await Promise.all([Promise.allSettled(a), Promise.allSettled(b)]);
    const failed = [...ra, ...rb].find((r) => r.status === "rejected");
    if (failed) {
      this.dropLeases();
      throw (failed as PromiseRejectedResult).reason;
    }
    const value = <T>(r: PromiseSettledResult<T>) => (r as PromiseFulfilledResult<T>).value;
    return [ra.map(value), rb.map(value)];
  }

  #windowKey(q: QuotaStep, now: Date): { redisKey: string; endsAt: number } {
    const { index, endsInMs } = windowOf(q.rule, now);
    return { redisKey: taggedKey(this.#quota, q.key, `:${index}`), endsAt: now.getTime() + endsInMs };
  }

  #liveRate(key: string, rule: RateRule, nowMs: number): RateLease | undefined {
    const lease = this.#rates.get(key);
    if (!lease || !sameRule(lease.rule, rule)) return undefined;
    return lease.tokens > 0 && nowMs < lease.expiresAt && nowMs >= lease.grantedAt ? lease : undefined;
  }

  #liveQuota(redisKey: string, rule: QuotaRule, nowMs: number): QuotaLease | undefined {
    const lease = this.#quotas.get(redisKey);
    if (!lease || !sameRule(lease.rule, rule) || nowMs >= lease.windowEndsAt) return undefined;
    return lease;
  }

  #hasSlot(redisKey: string, rule: QuotaRule, nowMs: number): boolean {
    const lease = this.#liveQuota(redisKey, rule, nowMs);
    return lease !== undefined && lease.free.length > 0 && nowMs < lease.expiresAt;
  }

  /** The decision for a token just taken from `lease`; a lease used up quickly grows. */
  #used(lease: RateLease, nowMs: number): RateDecision {
    if (lease.tokens === 0 && nowMs - lease.grantedAt < this.#life) {
      lease.size = Math.min(leaseCap(lease.rule.limit), lease.size * 2);
    }
    return { allowed: true, remaining: lease.remaining + lease.tokens, retryAfterMs: 0 };
  }

  /**
   * A new lease on `key` for this request (its first token is this request's), giving back in the
   * same call what the old one left unused.
   */
  async #leaseRate(
    key: string,
    rule: RateRule,
    nowMs: number,
  ): Promise<{ decision: RateDecision; lease?: RateLease }> {
    const epoch = this.#epoch;
    const old = this.#rates.get(key);
    let size = 1;
    let refund: (string | number)[] = [0, 0, 0, old?.hold ?? "", 0];
    if (old && !sameRule(old.rule, rule)) {
      await this.#refundRate(key, old, nowMs);
    } else if (old) {
      size = old.size;
      if (old.tokens > 0) {
        // Tokens left at expiry: the lease was bigger than this key's pace.
        size = Math.floor(size / 2);
        refund = [old.tokens * rule.windowMs, old.debtAfter, old.keyAt, old.hold, old.keyRef];
      }
      old.tokens = 0; // given back in this call
    }
    size = this.#rateLeases ? Math.max(1, Math.min(size, leaseCap(rule.limit))) : 1;
    const hold = `h:${this.#id}:${this.#seq++}`;
    const reply = await this.#send(
      "r",
      taggedKey(this.#rate, key),
      rule.limit,
      rule.windowMs,
      nowMs,
      size,
      hold,
      this.#life,
      ...refund,
    );
    const [granted, remaining, retryAfterMs, debtAfter, keyAt, keyRef] = integers(reply, 6);
    if (granted! < 0 || granted! > size) throw new Error("unexpected reply from Redis script");
    if (granted === 0) {
      this.#rates.delete(key);
      return { decision: { allowed: false, remaining: 0, retryAfterMs: retryAfterMs! } };
    }
    const lease: RateLease = {
      rule,
      tokens: granted! - 1,
      grantedAt: nowMs,
      expiresAt: nowMs + this.#life,
      debtAfter: debtAfter!,
      keyAt: keyAt!,
      keyRef: keyRef!,
      remaining: remaining!,
      hold,
      size,
    };
    const decision = this.#used(lease, nowMs);
    // After a drop (the connection was lost meanwhile) nothing is kept: the extra tokens are
    // never used, and only stay as debt (stricter, never looser).
    if (epoch === this.#epoch) {
      const current = this.#rates.get(key);
      // Two leases of one key landed together: the other one's tokens go back.
      if (current && current !== old && current.tokens > 0) {
        this.#refundRate(key, current, nowMs).catch((err: unknown) => this.#failed(err));
      }
      this.#rates.set(key, lease);
    }
    return { decision, lease };
  }

  /** Gives back the tokens `lease` has not used. */
  async #refundRate(key: string, lease: RateLease, nowMs: number): Promise<void> {
    if (this.#rates.get(key) === lease) this.#rates.delete(key);
    if (lease.tokens <= 0) return;
    const units = lease.tokens * lease.rule.windowMs;
    lease.tokens = 0;
    const reply = await this.#send(
      "r",
      taggedKey(this.#rate, key),
      lease.rule.limit,
      lease.rule.windowMs,
      nowMs,
      0,
      "",
      this.#life,
      units,
      lease.debtAfter,
      lease.keyAt,
      lease.hold,
      lease.keyRef,
    );
    integers(reply, 6);
  }

  /**
   * One round trip for a window: commits and releases what this gateway holds there, then `op`
   * (the exact admit, or a count) and a new lease. Returns whether `op` allowed, and the count
   * before the new slots.
   */
  async #leaseQuota(
    rule: QuotaRule,
    w: { redisKey: string; endsAt: number },
    op: "admit" | "count",
    recordId: string,
    nowMs: number,
  ): Promise<{ allowed: boolean; count: number }> {
    const epoch = this.#epoch;
    let old = this.#quotas.get(w.redisKey);
    if (old && !sameRule(old.rule, rule)) {
      await this.#syncQuota(w.redisKey, old, nowMs, true);
      old = undefined;
    }
    let size = old?.size ?? 1;
    if (old) {
      // Slots all used before the lease's end: twice as many next time; some left: half.
      if (old.free.length === 0 && nowMs - old.grantedAt < this.#life) size *= 2;
      else if (old.free.length > 0) size = Math.floor(size / 2);
    }
    size = Math.max(1, Math.min(size, leaseCap(rule.limit)));
    const want = op === "admit" ? size - 1 : size;
    // Taken out now, so that nothing else commits or uses them while this call is out.
    // At most one lease's worth of each per call (its arguments stay small); the rest stays
    // with the lease below, as anything got meanwhile does.
    const pending = old ? old.pending.splice(0, MAX_LEASE) : [];
    const release = old ? old.free.splice(0, MAX_LEASE) : [];
    const prefix = `~lease:${this.#id}:`;
    const seq = this.#seq;
    this.#seq += want;
    const reply = await this.#send(
      "q",
      w.redisKey,
      Math.max(1, w.endsAt - nowMs),
      rule.limit,
      op,
      recordId,
      want,
      prefix,
      seq,
      pending.length,
      ...pending.flat(),
      release.length,
      ...release,
    );
    const [allowed, count, granted] = integers(reply, 3);
    if (granted! < 0 || granted! > want || (allowed !== 0 && allowed !== 1)) {
      throw new Error("unexpected reply from Redis script");
    }
    if (epoch !== this.#epoch) return { allowed: allowed === 1, count: count! };
    const free: string[] = [];
    for (let i = 0; i < granted!; i++) free.push(`${prefix}${seq + i}`);
    const next: QuotaLease = {
      rule,
      windowEndsAt: w.endsAt,
      free,
      expiresAt: nowMs + this.#life,
      grantedAt: nowMs,
      granted: granted!,
      admitted: old?.admitted ?? new Set(),
      pending: [],
      known: count!,
      size,
    };
    if (op === "admit" && allowed === 1) remember(next.admitted, recordId);
    // Whatever this gateway got meanwhile on the same window (another call's lease, records
    // admitted from it) stays this gateway's.
    const current = this.#quotas.get(w.redisKey);
    if (current && sameRule(current.rule, rule)) {
      next.free.push(...current.free);
      next.pending.push(...current.pending);
      for (const r of current.admitted) remember(next.admitted, r);
    }
    this.#quotas.set(w.redisKey, next);
    return { allowed: allowed === 1, count: count! };
  }

  /** Commits the records admitted here; with `release`, gives back the free slots too. */
  async #syncQuota(redisKey: string, lease: QuotaLease, nowMs: number, release: boolean): Promise<void> {
    const pending = lease.pending.splice(0);
    const freed = release ? lease.free.splice(0) : [];
    // A window that is over has no set any more: nothing to commit, nothing to give back.
    if ((pending.length === 0 && freed.length === 0) || nowMs >= lease.windowEndsAt) return;
    // At most MAX_LEASE of each per call: concurrent leases on one key can leave more than one
    // lease's worth here, and one call's arguments must stay small (MAX_LEASE).
    for (let i = 0; i < Math.max(pending.length, freed.length); i += MAX_LEASE) {
      const records = pending.slice(i, i + MAX_LEASE);
      const slots = freed.slice(i, i + MAX_LEASE);
      const args: Arg[] = [Math.max(1, lease.windowEndsAt - nowMs), lease.rule.limit, "sync", "", 0, "", 0];
      args.push(records.length);
      for (const [record, placeholder] of records) args.push(record, placeholder);
      args.push(slots.length);
      for (const slot of slots) args.push(slot);
      integers(await this.#send("q", redisKey, ...args), 3);
    }
  }

  /** One step's script; on one Redis, queued with the others of this tick into one script. */
  #send(kind: "r" | "q", key: string, ...args: Arg[]): Promise<unknown> {
    if (!this.#batching) {
      return kind === "r"
        ? this.#redis.phaselockLeaseRate(key, ...args)
        : this.#redis.phaselockLeaseQuota(key, ...args);
    }
    return new Promise((resolve, reject) => {
      if (this.#queue.push({ kind, key, args, resolve, reject }) === 1)
        queueMicrotask(() => this.#sendQueued());
    });
  }

  #sendQueued(): void {
    const queued = this.#queue;
    this.#queue = [];
    let batch: QueuedStep[] = [];
    let args = 0;
    for (const step of queued) {
      const size = step.args.length + 3;
      if (batch.length > 0 && args + size > MAX_SCRIPT_ARGS) {
        this.#sendBatch(batch);
        batch = [];
        args = 0;
      }
      batch.push(step);
      args += size;
    }
    if (batch.length > 0) this.#sendBatch(batch);
  }

  #sendBatch(steps: QueuedStep[]): void {
    if (steps.length === 1) {
      const [s] = steps as [QueuedStep];
      const one = s.kind === "r" ? this.#redis.phaselockLeaseRate : this.#redis.phaselockLeaseQuota;
      one.call(this.#redis, s.key, ...s.args).then(s.resolve, s.reject);
      return;
    }
    const argv: Arg[] = [];
    for (const s of steps) {
      argv.push(s.kind, s.args.length);
      for (const a of s.args) argv.push(a);
    }
    this.#redis.phaselockLeaseBatch(steps.length, ...steps.map((s) => s.key), ...argv).then(
      (reply) => {
        if (!Array.isArray(reply) || reply.length !== steps.length) {
          const err = new Error("unexpected reply from Redis script");
          for (const s of steps) s.reject(err);
          return;
        }
        for (let i = 0; i < steps.length; i++) steps[i]!.resolve(reply[i]);
      },
      (err: unknown) => {
        for (const s of steps) s.reject(err);
      },
    );
  }

  #failed(err: unknown): void {
    this.dropLeases();
    this.#onError?.(err);
  }
}

const sameRule = (a: { limit: number; windowMs: number }, b: { limit: number; windowMs: number }) =>
  a.limit === b.limit && a.windowMs === b.windowMs;

function remember(admitted: Set<string>, recordId: string): void {
  if (admitted.size >= MAX_REMEMBERED) admitted.clear();
  admitted.add(recordId);
}
