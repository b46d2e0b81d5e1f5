import { asc, eq, gt, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { policyChanges, policyState, type StoredPolicyChange } from "../schema/index.ts";

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

/**
 * Bumps the version and logs `change` under it, in the caller's transaction: the log row commits
 * exactly when the write does. Rows are kept (policy writes are rare admin actions); a reader
 * that finds a version missing reloads in full.
 */
export async function logPolicyChange(tx: Tx | Db, change: StoredPolicyChange): Promise<number> {
  const version = await bumpPolicyVersion(tx);
  await tx.insert(policyChanges).values({ version, change });
  return version;
}

/** One row of the change log, as read (validate `change` before use). */
export interface LoggedChange {
  version: number;
  change: unknown;
  /** when the change was committed (the gateway's revocation-lag metric) */
  at?: Date | undefined;
}

/**
 * The stored version and the logged changes after `after`, in version order. One statement (one
 * round trip, on the revocation path), so `stored` and the rows come from one snapshot. At most
 * `limit` rows: a reader that gets fewer than `stored - after` reloads in full.
 */
export async function loadPolicyChanges(
  db: Db | Tx,
  after: number,
  limit = 1000,
): Promise<{ stored: number; changes: LoggedChange[] }> {
  const rows = await db
    .select({
      stored: policyState.version,
      version: policyChanges.version,
      change: policyChanges.change,
      at: policyChanges.at,
    })
    .from(policyState)
    .leftJoin(policyChanges, gt(policyChanges.version, after))
    .where(eq(policyState.id, 1))
    .orderBy(asc(policyChanges.version))
    .limit(limit);
  const first = rows[0];
  if (!first) throw new Error("policy_state row missing: the database is not migrated");
  const changes: LoggedChange[] = [];
  for (const r of rows)
    if (r.version !== null) changes.push({ version: r.version, change: r.change, at: r.at ?? undefined });
  return { stored: first.stored, changes };
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
