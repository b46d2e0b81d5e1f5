import { PhaselockError, randomId } from "@phaselock/core";
import { type Revocation, type RevocationTarget, revocationRecordSchema } from "@phaselock/policy";
import { and, asc, desc, type SQL, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { policyChanges, revocations } from "../schema/index.ts";
import { clampLimit, decodeCursor, encodeCursor } from "./cursor.ts";
import type { Page } from "./links.ts";
import { bumpPolicyVersion } from "./policy-state.ts";

export type NewRevocation = RevocationTarget & {
  id?: string;
  reason: string;
  actor: string;
  effectiveAt: Date;
  createdAt?: Date;
};

export interface RevocationsRepo {
  /**
   * Stores a revocation (a policy write: bumps the version). `id` defaults to a fresh `rev_…`,
   * `createdAt` to `effectiveAt`. Throws `PhaselockError("validation")` when the fields the scope
   * matches on are missing.
   */
  insert(r: NewRevocation): Promise<{ version: number; revocation: Revocation }>;
  /** Newest first by (createdAt, id). */
  list(query: { limit: number; cursor?: string | null | undefined }): Promise<Page<Revocation>>;
  /** Every revocation, oldest first: what a gateway indexes. */
  all(): Promise<Revocation[]>;
}

type RevocationRow = typeof revocations.$inferSelect;

/** A stored row is checked like any other revocation: a malformed one fails the load, closed. */
const toRevocation = (r: RevocationRow): Revocation =>
  revocationRecordSchema.parse({
    id: r.id,
    scope: r.scope,
    linkId: r.linkId,
    volunteerRef: r.volunteerRef,
    campaignId: r.campaignId,
    contestId: r.contestId,
    phase: r.phase,
    reason: r.reason,
    actor: r.actor,
    effectiveAt: r.effectiveAt,
    createdAt: r.createdAt,
  });

export async function loadRevocations(db: Db | Tx): Promise<Revocation[]> {
  return (await db.select().from(revocations).orderBy(asc(revocations.createdAt), asc(revocations.id))).map(
    toRevocation,
  );
}

export const revocationsRepo = (db: Db): RevocationsRepo => ({
  insert: async (r) => {
    const checked = revocationRecordSchema.safeParse({
      ...r,
      id: r.id ?? "new",
      createdAt: r.createdAt ?? r.effectiveAt,
    });
    if (!checked.success) {
      const field = checked.error.issues[0]?.path.join(".") ?? "scope";
      throw new PhaselockError("validation", `a ${r.scope} revocation has a bad or missing ${field}`);
    }
    return db.transaction(async (tx) => {
      const version = await bumpPolicyVersion(tx);
      const [row] = await tx
        .insert(revocations)
        .values({
          id: r.id ?? randomId("rev"),
          scope: r.scope,
          linkId: r.linkId ?? null,
          volunteerRef: r.volunteerRef ?? null,
          campaignId: r.campaignId ?? null,
          contestId: r.contestId ?? null,
          phase: r.phase ?? null,
          reason: r.reason,
          actor: r.actor,
          effectiveAt: r.effectiveAt,
          // Set from the caller's clock (ms precision) so list cursors round-trip exactly.
          createdAt: r.createdAt ?? r.effectiveAt,
        })
        .returning();
      const revocation = toRevocation(row!);
      await tx.insert(policyChanges).values({ version, change: { type: "revocation", revocation } });
      return { version, revocation };
    });
  },

  list: async ({ limit: requested, cursor }) => {
    const limit = clampLimit(requested);
    const after = cursor ? decodeCursor(cursor) : null;
    const where: SQL | undefined = after
      ? sql`(${revocations.createdAt}, ${revocations.id}) < (${after.at.toISOString()}::timestamptz, ${after.id})`
      : undefined;
    const rows = await db
      .select()
      .from(revocations)
      .where(and(where))
      .orderBy(desc(revocations.createdAt), desc(revocations.id))
      .limit(limit + 1);
    const items = rows.slice(0, limit).map(toRevocation);
    const last = items.at(-1);
    return {
      items,
      nextCursor: rows.length > limit && last ? encodeCursor({ at: last.createdAt!, id: last.id }) : null,
    };
  },

  all: () => loadRevocations(db),
});
