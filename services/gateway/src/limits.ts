import type { Campaign, LinkClaims } from "@phaselock/policy";
import { composeMeter, type Meter, type RateLimiter, type RecordQuota } from "@phaselock/state";
import { type Refusal, refusal } from "./refusals.ts";

/**
 * Rate limits and record quotas, the last checks before the upstream. A store failure throws:
 * the caller answers `unavailable` rather than let traffic through unmetered.
 */
export interface Limits {
  /**
   * Counts one request against the link's and the campaign's rate limits; with `recordsLeft`,
   * then (when they allow) also refuses as `recordsLeft` would, in the same store call: one Redis
   * round trip for what were four.
   */
  request(
    claims: LinkClaims,
    campaign: Campaign | undefined,
    now: Date,
    opts?: { recordsLeft?: boolean },
  ): Promise<Refusal | null>;
  /** Whether the link may receive member record `recordId` (records it already saw are free). */
  admitRecord(
    claims: LinkClaims,
    campaign: Campaign | undefined,
    recordId: string,
    now: Date,
  ): Promise<Refusal | null>;
  /** Refuses before the upstream is asked when the link's or campaign's record quota is spent. */
  recordsLeft(claims: LinkClaims, campaign: Campaign | undefined, now: Date): Promise<Refusal | null>;
}

export interface LimitDefaults {
  /** per link, when the campaign sets none: a person making calls */
  requestsPerMinute: number;
  /** distinct member records per link and hour, when the campaign sets none */
  recordsPerHour: number;
  /** a campaign as a whole may use this many links' worth of both */
  campaignFactor: number;
}

export const DEFAULT_LIMITS: LimitDefaults = {
  requestsPerMinute: 30,
  recordsPerHour: 60,
  campaignFactor: 200,
};

const MINUTE = 60_000;
const HOUR = 3_600_000;

export function createLimits(opts: {
  rateLimiter: RateLimiter;
  recordQuota: RecordQuota;
  /** the same counters in one store call per step (default: separate calls to the two above) */
  meter?: Meter | undefined;
  defaults?: Partial<LimitDefaults> | undefined;
}): Limits {
  const d = { ...DEFAULT_LIMITS, ...opts.defaults };
  const meter = opts.meter ?? composeMeter(opts.rateLimiter, opts.recordQuota);
  const rpm = (c: Campaign | undefined) => c?.limits.requestsPerMinute ?? d.requestsPerMinute;
  const rph = (c: Campaign | undefined) => c?.limits.recordsPerHour ?? d.recordsPerHour;
  const quotaSteps = (claims: LinkClaims, c: Campaign | undefined) => [
    { key: `rq:link:${claims.jti}`, rule: { limit: rph(c), windowMs: HOUR } },
    { key: `rq:campaign:${claims.cmp}`, rule: { limit: rph(c) * d.campaignFactor, windowMs: HOUR } },
  ];
  const rateSteps = (claims: LinkClaims, c: Campaign | undefined) => [
    { key: `rl:link:${claims.jti}`, rule: { limit: rpm(c), windowMs: MINUTE } },
    { key: `rl:campaign:${claims.cmp}`, rule: { limit: rpm(c) * d.campaignFactor, windowMs: MINUTE } },
  ];
  const rateLimited = (retryAfterMs: number) =>
    refusal("rate_limited", { retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)) });
  // The quota steps' order (quotaSteps): the link's, then the campaign's.
  const QUOTA_OF = ["link", "campaign"] as const;
  /** `step`: the index of the first quota step that is spent, so the words blame the right one. */
  const quotaSpent = (now: Date, step: number) =>
    refusal("quota_exceeded", {
      retryAfterSeconds: Math.max(1, Math.ceil((HOUR - (now.getTime() % HOUR)) / 1000)),
      quotaOf: QUOTA_OF[step] ?? "link",
    });
  const spentStep = (counts: number[], quotas: ReturnType<typeof quotaSteps>) =>
    counts.findIndex((n, i) => n >= quotas[i]!.rule.limit);

  return {
    async request(claims, campaign, now, o) {
      const quotas = o?.recordsLeft ? quotaSteps(claims, campaign) : [];
      const r = await meter.check(rateSteps(claims, campaign), quotas, now);
      if (r.denied) return rateLimited(r.denied.decision.retryAfterMs);
      const spent = spentStep(r.counts, quotas);
      return spent < 0 ? null : quotaSpent(now, spent);
    },
    async recordsLeft(claims, campaign, now) {
      const quotas = quotaSteps(claims, campaign);
      const spent = spentStep((await meter.check([], quotas, now)).counts, quotas);
      return spent < 0 ? null : quotaSpent(now, spent);
    },
    async admitRecord(claims, campaign, recordId, now) {
      const refused = await meter.admit(quotaSteps(claims, campaign), recordId, now);
      return refused === null ? null : quotaSpent(now, refused);
    },
  };
}

export const unlimited: Limits = {
  request: async () => null,
  admitRecord: async () => null,
  recordsLeft: async () => null,
};
