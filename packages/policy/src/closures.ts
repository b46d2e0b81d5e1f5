import { epochSeconds } from "@phaselock/core";
import type { ClosureIndex, Contest, Phase } from "./types.ts";

/** A phase switched off before its time, by the end route or by a timeline that cut it short. */
export interface PhaseClosure {
  contestId: string;
  phase: string;
  closedAt: Date;
  reason: string;
  /** API key id or "admin". */
  actor: string;
}

/** Builds a {@link ClosureIndex}; only the latest closure of a phase matters (it covers the earlier ones). */
export function indexClosures(closures: Iterable<Pick<PhaseClosure, "contestId" | "phase" | "closedAt">>) {
  const index: ClosureIndex = new Map();
  for (const c of closures) addClosure(index, c);
  return index;
}

/** Adds one closure in place, keeping the latest per phase. */
export function addClosure(
  index: ClosureIndex,
  c: Pick<PhaseClosure, "contestId" | "phase" | "closedAt">,
): void {
  let phases = index.get(c.contestId);
  if (!phases) {
    phases = new Map();
    index.set(c.contestId, phases);
  }
  const prev = phases.get(c.phase);
  if (!prev || prev.getTime() < c.closedAt.getTime()) phases.set(c.phase, c.closedAt);
}

/**
 * Whether a link of `cst`/`phs` issued at `iat` (epoch seconds) died with a closure of its phase.
 * Compared at the closure's second, like revocations: a link issued in that second is covered,
 * since token times cannot tell it apart from one issued just before.
 */
export function closedForLink(index: ClosureIndex, claims: { cst: string; phs: string; iat: number }) {
  const closedAt = index.get(claims.cst)?.get(claims.phs);
  return closedAt !== undefined && claims.iat <= epochSeconds(closedAt);
}

/**
 * The phases a timeline replacement at `now` ends early: those that had not ended yet under the
 * old timeline and, under the new one, have ended already or are gone; and a running phase whose
 * new window starts later (postponed: its run ends now, and its links with it, as the landing
 * page's 410 says; the later window takes links issued after this). A phase merely shortened to
 * a later end is not ended early; it ends when its new end comes.
 */
export function phasesEndedEarly(before: readonly Phase[], after: readonly Phase[], now: Date): string[] {
  const t = now.getTime();
  const next = new Map(after.map((p) => [p.name, p]));
  return before
    .filter((old) => {
      if (old.endsAt.getTime() <= t) return false;
      const p = next.get(old.name);
      if (!p || p.endsAt.getTime() <= t) return true;
      return old.startsAt.getTime() <= t && p.startsAt.getTime() > t;
    })
    .map((p) => p.name);
}

/**
 * The phases a timeline replacement at `now` re-opens after their end had passed (over under the
 * old timeline, running or due under the new one), each with that end: a closure there keeps
 * their links dead, since a phase cut short to an end still to come has links whose `exp` outlives
 * it, which a re-opened window would otherwise revive. None for a phase whose latest closure
 * (`closed`: that contest's, from a {@link ClosureIndex}) already covers that end.
 */
export function phasesReopenedAfterEnd(
  before: readonly Phase[],
  after: readonly Phase[],
  closed: ReadonlyMap<string, Date> | undefined,
  now: Date,
): Array<{ phase: string; closedAt: Date }> {
  const t = now.getTime();
  const next = new Map(after.map((p) => [p.name, p]));
  return before
    .filter((old) => {
      const p = next.get(old.name);
      if (!p || old.endsAt.getTime() > t || p.endsAt.getTime() <= t) return false;
      const closure = closed?.get(old.name);
      return !closure || closure.getTime() < old.endsAt.getTime();
    })
    .map((old) => ({ phase: old.name, closedAt: old.endsAt }));
}

/**
 * Phases of `contest` that a closure ended early and that are open or due again (their end is
 * after `now`): the links the closure killed stay dead, which the caller should be told.
 */
export function reopenedClosures(
  contest: Contest,
  index: ClosureIndex,
  now: Date,
): Array<{ phase: string; closedAt: Date }> {
  const closed = index.get(contest.id);
  if (!closed) return [];
  const out: Array<{ phase: string; closedAt: Date }> = [];
  for (const p of contest.phases) {
    const closedAt = closed.get(p.name);
    if (closedAt && p.endsAt.getTime() > now.getTime()) out.push({ phase: p.name, closedAt });
  }
  return out;
}
