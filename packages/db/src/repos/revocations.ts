import { PhaselockError, randomId } from "@phaselock/core";
import { type Revocation, type RevocationTarget, revocationRecordSchema } from "@phaselock/policy";
import { and, asc, desc, eq, type SQL, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { policyChanges, policyState, revocations } from "../schema/index.ts";
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
  /**
   * Revokes each link of `linkIds` by a `link` revocation of its own, in `tx` (the caller's
   * transaction) with multi-row statements: one version per revocation, each logged, so
   * gateways apply them like any other. `version` is the last one (null when `linkIds` is empty).
   * The links' campaign and contest are kept for the record, as `insert` keeps a link's (only
   * the link id matches).
   */
  insertForLinks(
    tx: Tx,
    input: {
      linkIds: readonly string[];
      campaignId: string;
      contestId: string;
      reason: string;
      actor: string;
      effectiveAt: Date;
    },
  ): Promise<{ version: number | null; revocations: Revocation[] }>;
  /** Newest first by (createdAt, id). */
  list(query: { limit: number; cursor?: string | null | undefined }): Promise<Page<Revocation>>;
  /** Every revocation, oldest first: what a gateway indexes. */
  all(): Promise<Revocation[]>;
}

/** Rows per multi-row statement of a bulk revocation: bounds the one JSON parameter it binds. */
const BULK_CHUNK = 5000;

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

/** Rows per query of {@link loadRevocations}. */
export const REVOCATION_PAGE_ROWS = 5_000;

/**
 * Every revocation in `(createdAt, id)` order, read in pages of {@link REVOCATION_PAGE_ROWS} on the
 * `revocations_created_idx` index. One query for 100,000 rows held the driver's rows, drizzle's
 * and ours at once: a gateway's heap grew to ~220 MB to load ~50 MB of revocations, and kept
 * that size. Call it inside one REPEATABLE READ transaction (as `loadPolicySnapshot` does) so
 * the pages are one snapshot.
 */
export async function loadRevocations(
  db: Db | Tx,
  pageRows: number = REVOCATION_PAGE_ROWS,
): Promise<Revocation[]> {
  const out: Revocation[] = [];
  // The cursor's time as Postgres's own text: a JS Date would drop the microseconds of a row
  // written with now(), and the next page would repeat rows.
  let after: { at: string; id: string } | undefined;
  for (;;) {
    const page = await db
      .select({ row: revocations, at: sql<string>`${revocations.createdAt}::text` })
      .from(revocations)
      .where(
        after
          ? sql`(${revocations.createdAt}, ${revocations.id}) > (${after.at}::timestamptz, ${after.id})`
          : undefined,
      )
      .orderBy(asc(revocations.createdAt), asc(revocations.id))
      .limit(pageRows);
    for (const { row } of page) out.push(toRevocation(row));
    const last = page.at(-1);
    if (!last || page.length < pageRows) return out;
    after = { at: last.at, id: last.row.id };
  }
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

  insertForLinks: async (tx, { linkIds, campaignId, contestId, reason, actor, effectiveAt }) => {
    if (linkIds.length === 0) return { version: null, revocations: [] };
    const [state] = await tx
      .update(policyState)
      .set({ version: sql`${policyState.version} + ${linkIds.length}` })
      .where(eq(policyState.id, 1))
      .returning({ version: policyState.version });
    if (!state) throw new Error("policy_state row missing: the database is not migrated");
    const first = state.version - linkIds.length + 1;
    const made = linkIds.map((linkId) =>
      revocationRecordSchema.parse({
        id: randomId("rev"),
        scope: "link",
        linkId,
        campaignId,
        contestId,
        reason,
        actor,
        effectiveAt,
        createdAt: effectiveAt,
      }),
    );
    for (let i = 0; i < made.length; i += BULK_CHUNK) {
      const chunk = made.slice(i, i + BULK_CHUNK);
      const rows = chunk.map((r) => ({
        id: r.id,
        link_id: r.linkId,
        reason: r.reason,
        actor: r.actor,
        at: effectiveAt.toISOString(),
      }));
      await tx.execute(sql`insert into ${revocations}
          (id, scope, link_id, campaign_id, contest_id, reason, actor, effective_at, created_at)
        select id, 'link', link_id, ${campaignId}, ${contestId}, reason, actor, at, at
        from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
          as x(id text, link_id text, reason text, actor text, at timestamptz)`);
      const changes = chunk.map((revocation, j) => ({
        version: first + i + j,
        change: { type: "revocation", revocation },
      }));
      await tx.execute(sql`insert into ${policyChanges} (version, change)
        select version, change from jsonb_to_recordset(${JSON.stringify(changes)}::jsonb)
          as x(version bigint, change jsonb)`);
    }
    return { version: state.version, revocations: made };
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

  // One snapshot for every page (a revocation committed between two pages could sort before the cursor).
  all: () =>
    db.transaction((tx) => loadRevocations(tx), {
      isolationLevel: "repeatable read",
      accessMode: "read only",
    }),
});
