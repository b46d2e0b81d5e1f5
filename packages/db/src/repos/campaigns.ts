import { PhaselockError } from "@phaselock/core";
import type { Campaign } from "@phaselock/policy";
import { and, asc, eq, gt, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { campaigns, contests, policyChanges } from "../schema/index.ts";
import { clampLimit, decodeIdCursor, encodeIdCursor, pageOf } from "./cursor.ts";
import type { Page } from "./links.ts";
import { bumpPolicyVersion } from "./policy-state.ts";

export interface CampaignsRepo {
  /**
   * Creates or updates a campaign (bumps the policy version). Throws `PhaselockError("not_found")`
   * when the contest does not exist.
   */
  upsert(campaign: Campaign): Promise<{ version: number; campaign: Campaign }>;
  get(id: string): Promise<Campaign | null>;
  list(): Promise<Campaign[]>;
  /** One page of campaigns by id, optionally of one contest or only one campaign. */
  listPage(query: {
    contestId?: string | undefined;
    /** Restricts the list to this campaign (a coordinator's own). */
    only?: string | undefined;
    limit: number;
    cursor?: string | null | undefined;
  }): Promise<Page<Campaign>>;
}

type CampaignRow = typeof campaigns.$inferSelect;

export const toCampaign = (r: CampaignRow): Campaign => {
  const limits: Campaign["limits"] = {};
  if (r.requestsPerMinute !== null) limits.requestsPerMinute = r.requestsPerMinute;
  if (r.recordsPerHour !== null) limits.recordsPerHour = r.recordsPerHour;
  return { id: r.id, name: r.name, contestId: r.contestId, limits };
};

export async function loadCampaigns(db: Db | Tx): Promise<Campaign[]> {
  return (await db.select().from(campaigns).orderBy(asc(campaigns.id))).map(toCampaign);
}

export const campaignsRepo = (db: Db): CampaignsRepo => ({
  upsert: (c) =>
    db.transaction(async (tx) => {
      const version = await bumpPolicyVersion(tx);
      const [contest] = await tx
        .select({ id: contests.id })
        .from(contests)
        .where(eq(contests.id, c.contestId));
      if (!contest) throw new PhaselockError("not_found", `unknown contest "${c.contestId}"`);
      const values = {
        name: c.name,
        contestId: c.contestId,
        requestsPerMinute: c.limits.requestsPerMinute ?? null,
        recordsPerHour: c.limits.recordsPerHour ?? null,
      };
      const [row] = await tx
        .insert(campaigns)
        .values({ id: c.id, ...values })
        .onConflictDoUpdate({ target: campaigns.id, set: { ...values, updatedAt: sql`now()` } })
        .returning();
      const campaign = toCampaign(row!);
      await tx.insert(policyChanges).values({ version, change: { type: "campaign", campaign } });
      return { version, campaign };
    }),
  get: async (id) => {
    const [row] = await db.select().from(campaigns).where(eq(campaigns.id, id));
    return row ? toCampaign(row) : null;
  },
  list: () => loadCampaigns(db),
  listPage: async ({ contestId, only, limit: requested, cursor }) => {
    const limit = clampLimit(requested);
    const after = cursor ? decodeIdCursor(cursor) : null;
    const rows = await db
      .select()
      .from(campaigns)
      .where(
        and(
          contestId === undefined ? undefined : eq(campaigns.contestId, contestId),
          only === undefined ? undefined : eq(campaigns.id, only),
          after === null ? undefined : gt(campaigns.id, after),
        ),
      )
      .orderBy(asc(campaigns.id))
      .limit(limit + 1);
    const page = pageOf(rows, limit, (r) => encodeIdCursor(r.id));
    return { items: page.items.map(toCampaign), nextCursor: page.nextCursor };
  },
});
