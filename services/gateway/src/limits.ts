import type { Campaign, LinkClaims } from "@phaselock/policy";
import type { RateLimiter, RecordQuota } from "@phaselock/state";
import { type Refusal, refusal } from "./refusals.ts";

/**
 * Rate limits and record quotas, the last checks before the upstream. A store failure throws:
 * the caller answers `unavailable` rather than let traffic through unmetered.
 */
export interface Limits {
  /** Counts one request against the link's and the campaign's rate limits. */
  request(claims: LinkClaims, campaign: Campaign | undefined, now: Date): Promise<Refusal | null>;
  /** Whether the link may receive member record `recordId` (records it already saw are free). */
  admitRecord(
    claims: LinkClaims,
    campaign: Campaign | undefined,
    recordId: string,
    now: Date,
  ): Promise<Refusal | null>;
  /** Refuses before the upstream is asked when the link's or campaign's record quota is spent. */
  recordsLeft(claims: LinkClaims, campaign: Campaign | undefined, now: Date): Promise<Refusal | null>;
  /** Whether a redemption from `deviceId` keeps the link within its device allowance. */
  admitDevice(claims: LinkClaims, deviceId: string, maxDevices: number, now: Date): Promise<boolean>;
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
/** Devices are counted over a link's whole life (at most 90 days). */
const LINK_LIFETIME = 91 * 24 * HOUR;

export function createLimits(opts: {
  rateLimiter: RateLimiter;
  recordQuota: RecordQuota;
  defaults?: Partial<LimitDefaults> | undefined;
}): Limits {
  const d = { ...DEFAULT_LIMITS, ...opts.defaults };
  const rpm = (c: Campaign | undefined) => c?.limits.requestsPerMinute ?? d.requestsPerMinute;
  const rph = (c: Campaign | undefined) => c?.limits.recordsPerHour ?? d.recordsPerHour;
  const quotaKeys = (claims: LinkClaims, c: Campaign | undefined) =>
    [
      [`rq:link:${claims.jti}`, rph(c)],
      [`rq:campaign:${claims.cmp}`, rph(c) * d.campaignFactor],
    ] as const;
  const quotaSpent = (now: Date) =>
    refusal("quota_exceeded", {
      retryAfterSeconds: Math.max(1, Math.ceil((HOUR - (now.getTime() % HOUR)) / 1000)),
    });

  return {
    async request(claims, campaign, now) {
      const perLink = rpm(campaign);
      for (const [key, limit] of [
        [`rl:link:${claims.jti}`, perLink],
        [`rl:campaign:${claims.cmp}`, perLink * d.campaignFactor],
      ] as const) {
        const r = await opts.rateLimiter.consume(key, { limit, windowMs: MINUTE }, now);
        if (!r.allowed) {
          return refusal("rate_limited", {
            retryAfterSeconds: Math.max(1, Math.ceil(r.retryAfterMs / 1000)),
          });
        }
      }
      return null;
    },
    async recordsLeft(claims, campaign, now) {
      for (const [key, limit] of quotaKeys(claims, campaign)) {
        if ((await opts.recordQuota.count(key, { limit, windowMs: HOUR }, now)) >= limit)
          return quotaSpent(now);
      }
      return null;
    },
    async admitRecord(claims, campaign, recordId, now) {
      for (const [key, limit] of quotaKeys(claims, campaign)) {
        const q = await opts.recordQuota.admit(key, recordId, { limit, windowMs: HOUR }, now);
        if (!q.allowed) return quotaSpent(now);
      }
      return null;
    },
    async admitDevice(claims, deviceId, maxDevices, now) {
      const q = await opts.recordQuota.admit(
        `dv:link:${claims.jti}`,
        deviceId,
        { limit: maxDevices, windowMs: LINK_LIFETIME },
        now,
      );
      return q.allowed;
    },
  };
}

export const unlimited: Limits = {
  request: async () => null,
  admitRecord: async () => null,
  recordsLeft: async () => null,
  admitDevice: async () => true,
};
