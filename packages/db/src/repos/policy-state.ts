import { eq, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { policyState } from "../schema/index.ts";

/**
 * Bumps policy_state.version inside the caller's transaction and returns the new version. The row
 * lock it takes is held until commit, so versions are handed out in commit order.
 */
export async function bumpPolicyVersion(tx: Tx | Db): Promise<number> {
  const [row] = await tx
    .update(policyState)
    .set({ version: sql`${policyState.version} + 1` })
    .where(eq(policyState.id, 1))
    .returning({ version: policyState.version });
  if (!row) throw new Error("policy_state row missing: the database is not migrated");
  return row.version;
}

/** The current policy version (no bump). */
export async function currentPolicyVersion(db: Tx | Db): Promise<number> {
  const [row] = await db
    .select({ version: policyState.version })
    .from(policyState)
    .where(eq(policyState.id, 1));
  if (!row) throw new Error("policy_state row missing: the database is not migrated");
  return row.version;
}

export interface PolicyStateRepo {
  /** Bumps the version inside `tx` (a policy write's transaction); returns the new version. */
  bump(tx: Tx | Db): Promise<number>;
  current(): Promise<number>;
}

export const policyStateRepo = (db: Db): PolicyStateRepo => ({
  bump: bumpPolicyVersion,
  current: () => currentPolicyVersion(db),
});
