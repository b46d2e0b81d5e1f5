import {
  type Contest,
  indexClosures,
  type Phase,
  type PhaseClosure,
  phasesEndedEarly,
  phasesReopenedAfterEnd,
  reopenedClosures,
} from "@phaselock/policy";
import { and, asc, eq, gt, inArray, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { contests, phaseClosures, phases, policyChanges } from "../schema/index.ts";
import { clampLimit, decodeIdCursor, encodeIdCursor, pageOf } from "./cursor.ts";
import type { Page } from "./links.ts";
import { bumpPolicyVersion } from "./policy-state.ts";

/** Who changes a timeline and when: closures it causes are recorded under them. */
export interface TimelineChange {
  now: Date;
  actor: string;
  /** Recorded on the closures of phases the change ends early. */
  reason: string;
}

export interface TimelineReplaced {
  version: number;
  contest: Contest;
  /** Phases this replacement ended early, recorded in its transaction. */
  closed: PhaseClosure[];
  /** Phases ended early before that this timeline opens again: their old links stay dead. */
  reopened: Array<{ phase: string; closedAt: Date }>;
}

export type EndPhaseResult =
  | { ok: true; version: number; contest: Contest; closure: PhaseClosure }
  | { ok: false; code: "not_found" | "phase_closed" };

export interface ContestsRepo {
  /**
   * Creates the contest or replaces its name and whole timeline, in one transaction that bumps
   * the policy version and records a closure for every phase it ends early. The caller
   * validates the timeline (`validateTimeline`) first.
   */
  replaceTimeline(
    id: string,
    name: string,
    timeline: readonly Phase[],
    change: TimelineChange,
  ): Promise<TimelineReplaced>;
  /**
   * Ends a phase now: its end moves to `now` (to its start when it has not begun, an empty
   * window) and a closure is recorded, in one transaction that bumps the policy version.
   */
  endPhase(contestId: string, phase: string, change: TimelineChange): Promise<EndPhaseResult>;
  get(id: string): Promise<Contest | null>;
  /** Every contest, phases sorted by start. */
  list(): Promise<Contest[]>;
  /** One page of contests by id (`limit` 1..500), phases sorted by start. */
  listPage(query: { limit: number; cursor?: string | null | undefined }): Promise<Page<Contest>>;
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

/** Every phase closure, oldest first; `contestId` limits them to one contest. */
export async function loadClosures(db: Db | Tx, contestId?: string): Promise<PhaseClosure[]> {
  const rows = await db
    .select()
    .from(phaseClosures)
    .where(contestId === undefined ? undefined : eq(phaseClosures.contestId, contestId))
    .orderBy(asc(phaseClosures.closedAt), asc(phaseClosures.id));
  return rows.map(({ id: _id, ...c }) => c);
}

async function insertClosures(tx: Tx, closures: readonly PhaseClosure[]): Promise<void> {
  if (closures.length > 0) await tx.insert(phaseClosures).values([...closures]);
}

// Thrown inside a transaction to roll it back (and its version bump) for an expected refusal.
class Refusal extends Error {
  readonly code: "not_found" | "phase_closed";
  constructor(code: "not_found" | "phase_closed") {
    super(code);
    this.code = code;
  }
}

export const contestsRepo = (db: Db): ContestsRepo => ({
  replaceTimeline: (id, name, timeline, change) =>
    db.transaction(async (tx) => {
      // Bump first: the policy_state row lock serialises concurrent replacements of one timeline.
      const version = await bumpPolicyVersion(tx);
      const sorted = [...timeline].sort((a, b) => a.startsAt.getTime() - b.startsAt.getTime());
      const before = (await loadContests(tx, [id]))[0]?.phases ?? [];
      const earlier = await loadClosures(tx, id);
      const endedEarly = phasesEndedEarly(before, sorted, change.now).map((phase) => ({
        phase,
        closedAt: change.now,
      }));
      const reopenedAfterEnd = phasesReopenedAfterEnd(
        before,
        sorted,
        indexClosures(earlier).get(id),
        change.now,
      );
      const closed = [...endedEarly, ...reopenedAfterEnd].map(
        ({ phase, closedAt }): PhaseClosure => ({
          contestId: id,
          phase,
          closedAt,
          reason: change.reason,
          actor: change.actor,
        }),
      );
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
      await insertClosures(tx, closed);
      const contest = { id, name, phases: sorted.map((p) => ({ ...p })) };
      await logContestChange(tx, version, contest, closed);
      return {
        version,
        contest,
        closed,
        reopened: reopenedClosures(contest, indexClosures([...earlier, ...closed]), change.now),
      };
    }),
  endPhase: async (contestId, phase, change) => {
    try {
      return await db.transaction(async (tx): Promise<EndPhaseResult> => {
        const version = await bumpPolicyVersion(tx);
        const contest = (await loadContests(tx, [contestId]))[0];
        const target = contest?.phases.find((p) => p.name === phase);
        if (!contest || !target) throw new Refusal("not_found");
        const t = change.now.getTime();
        if (target.endsAt.getTime() <= t) throw new Refusal("phase_closed");
        const endsAt = new Date(Math.max(t, target.startsAt.getTime()));
        await tx
          .update(phases)
          .set({ endsAt })
          .where(and(eq(phases.contestId, contestId), eq(phases.name, phase)));
        await tx.update(contests).set({ updatedAt: sql`now()` }).where(eq(contests.id, contestId));
        const closure: PhaseClosure = {
          contestId,
          phase,
          closedAt: change.now,
          reason: change.reason,
          actor: change.actor,
        };
        await insertClosures(tx, [closure]);
        const phasesAfter = contest.phases.map((p) => (p.name === phase ? { ...p, endsAt } : p));
        const ended = { ...contest, phases: phasesAfter };
        await logContestChange(tx, version, ended, [closure]);
        return { ok: true, version, contest: ended, closure };
      });
    } catch (err) {
      if (err instanceof Refusal) return { ok: false, code: err.code };
      throw err;
    }
  },
  get: async (id) => (await loadContests(db, [id]))[0] ?? null,
  list: () => loadContests(db),
  listPage: async ({ limit: requested, cursor }) => {
    const limit = clampLimit(requested);
    const after = cursor ? decodeIdCursor(cursor) : null;
    const rows = await db
      .select({ id: contests.id })
      .from(contests)
      .where(after === null ? undefined : gt(contests.id, after))
      .orderBy(asc(contests.id))
      .limit(limit + 1);
    const page = pageOf(rows, limit, (r) => encodeIdCursor(r.id));
    return {
      items: await loadContests(
        db,
        page.items.map((r) => r.id),
      ),
      nextCursor: page.nextCursor,
    };
  },
});

/** The change gateways read from the Postgres log: the contest as written and what it closed. */
async function logContestChange(tx: Tx, version: number, contest: Contest, closed: PhaseClosure[]) {
  const closures = closed.map((c) => ({ contestId: c.contestId, phase: c.phase, closedAt: c.closedAt }));
  await tx.insert(policyChanges).values({ version, change: { type: "contest", contest, closures } });
}
