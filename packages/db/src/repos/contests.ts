import type { Contest, Phase } from "@phaselock/policy";
import { asc, eq, inArray, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { contests, phases, policyChanges } from "../schema/index.ts";
import { bumpPolicyVersion } from "./policy-state.ts";

export interface ContestsRepo {
  /**
   * Creates the contest or replaces its name and whole timeline, in one transaction that bumps
   * the policy version. The caller validates the timeline (`validateTimeline`) first.
   */
  replaceTimeline(
    id: string,
    name: string,
    timeline: readonly Phase[],
  ): Promise<{ version: number; contest: Contest }>;
  get(id: string): Promise<Contest | null>;
  /** Every contest, phases sorted by start. */
  list(): Promise<Contest[]>;
}

type PhaseRow = typeof phases.$inferSelect;

const toPhase = (p: PhaseRow): Phase => ({
  name: p.name,
  startsAt: p.startsAt,
  endsAt: p.endsAt,
  memberData: p.memberData,
});

/** Loads contests with their phases sorted by start. `ids` undefined means all. */
export async function loadContests(db: Db | Tx, ids?: readonly string[]): Promise<Contest[]> {
  if (ids?.length === 0) return [];
  const contestRows = await db
    .select()
    .from(contests)
    .where(ids ? inArray(contests.id, [...ids]) : undefined)
    .orderBy(asc(contests.id));
  if (contestRows.length === 0) return [];
  const phaseRows = await db
    .select()
    .from(phases)
    .where(ids ? inArray(phases.contestId, [...ids]) : undefined)
    .orderBy(asc(phases.contestId), asc(phases.startsAt), asc(phases.position));
  const byContest = new Map<string, Phase[]>();
  for (const p of phaseRows) {
    const list = byContest.get(p.contestId);
    if (list) list.push(toPhase(p));
    else byContest.set(p.contestId, [toPhase(p)]);
  }
  return contestRows.map((c) => ({ id: c.id, name: c.name, phases: byContest.get(c.id) ?? [] }));
}

export const contestsRepo = (db: Db): ContestsRepo => ({
  replaceTimeline: (id, name, timeline) =>
    db.transaction(async (tx) => {
      // Bump first: the policy_state row lock serialises concurrent replacements of one timeline.
      const version = await bumpPolicyVersion(tx);
      const sorted = [...timeline].sort((a, b) => a.startsAt.getTime() - b.startsAt.getTime());
      await tx
        .insert(contests)
        .values({ id, name })
        .onConflictDoUpdate({ target: contests.id, set: { name, updatedAt: sql`now()` } });
      await tx.delete(phases).where(eq(phases.contestId, id));
      if (sorted.length > 0) {
        await tx.insert(phases).values(
          sorted.map((p, position) => ({
            contestId: id,
            name: p.name,
            position,
            startsAt: p.startsAt,
            endsAt: p.endsAt,
            memberData: p.memberData,
          })),
        );
      }
      const contest = { id, name, phases: sorted.map((p) => ({ ...p })) };
      await tx.insert(policyChanges).values({ version, change: { type: "contest", contest } });
      return { version, contest };
    }),
  get: async (id) => (await loadContests(db, [id]))[0] ?? null,
  list: () => loadContests(db),
});
