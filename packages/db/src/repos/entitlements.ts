import { isScope, PhaselockError, type Scope } from "@phaselock/core";
import { and, eq, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { campaigns, entitlements, policyChanges } from "../schema/index.ts";
import { bumpPolicyVersion, currentPolicyVersion, logPolicyChange } from "./policy-state.ts";

export interface EntitlementsRepo {
  /**
   * Grants exactly `scopes` to the campaign in that phase (replacing any earlier grant). Throws
   * `PhaselockError("not_found")` for an unknown campaign.
   */
  put(
    campaignId: string,
    phase: string,
    scopes: readonly Scope[],
  ): Promise<{ version: number; scopes: Scope[] }>;
  /**
   * Withdraws the grant. When there was none, nothing is written and `version` is the current
   * version (a message carrying it is ignored by every subscriber).
   */
  remove(campaignId: string, phase: string): Promise<{ version: number; removed: boolean }>;
  get(campaignId: string, phase: string): Promise<Scope[] | null>;
  /** Every grant of the campaign: phase -> scopes. */
  forCampaign(campaignId: string): Promise<Record<string, Scope[]>>;
}

// Scopes are validated on the way in; anything else in the column is dropped rather than trusted.
export const toScopes = (scopes: readonly string[]): Scope[] => [...new Set(scopes.filter(isScope))];

/** campaignId -> phase -> scopes. */
export async function loadEntitlements(db: Db | Tx): Promise<Map<string, Map<string, Set<Scope>>>> {
  const rows = await db.select().from(entitlements);
  const out = new Map<string, Map<string, Set<Scope>>>();
  for (const r of rows) {
    const byPhase = out.get(r.campaignId) ?? new Map<string, Set<Scope>>();
    byPhase.set(r.phase, new Set(toScopes(r.scopes)));
    out.set(r.campaignId, byPhase);
  }
  return out;
}

export const entitlementsRepo = (db: Db): EntitlementsRepo => ({
  put: (campaignId, phase, scopes) =>
    db.transaction(async (tx) => {
      const version = await bumpPolicyVersion(tx);
      const [campaign] = await tx
        .select({ id: campaigns.id })
        .from(campaigns)
        .where(eq(campaigns.id, campaignId));
      if (!campaign) throw new PhaselockError("not_found", `unknown campaign "${campaignId}"`);
      const unique = toScopes(scopes);
      await tx
        .insert(entitlements)
        .values({ campaignId, phase, scopes: unique })
        .onConflictDoUpdate({
          target: [entitlements.campaignId, entitlements.phase],
          set: { scopes: unique, updatedAt: sql`now()` },
        });
      await tx
        .insert(policyChanges)
        .values({ version, change: { type: "entitlement", campaignId, phase, scopes: unique } });
      return { version, scopes: unique };
    }),
  remove: (campaignId, phase) =>
    db.transaction(async (tx) => {
      const deleted = await tx
        .delete(entitlements)
        .where(and(eq(entitlements.campaignId, campaignId), eq(entitlements.phase, phase)))
        .returning({ phase: entitlements.phase });
      if (deleted.length === 0) return { version: await currentPolicyVersion(tx), removed: false };
      const change = { type: "entitlement", campaignId, phase, scopes: null };
      return { version: await logPolicyChange(tx, change), removed: true };
    }),
  get: async (campaignId, phase) => {
    const [row] = await db
      .select({ scopes: entitlements.scopes })
      .from(entitlements)
      .where(and(eq(entitlements.campaignId, campaignId), eq(entitlements.phase, phase)));
    return row ? toScopes(row.scopes) : null;
  },
  forCampaign: async (campaignId) => {
    const rows = await db
      .select({ phase: entitlements.phase, scopes: entitlements.scopes })
      .from(entitlements)
      .where(eq(entitlements.campaignId, campaignId))
      .orderBy(entitlements.phase);
    const out: Record<string, Scope[]> = {};
    for (const r of rows) out[r.phase] = toScopes(r.scopes);
    return out;
  },
});
