import type { Contest, Phase } from "./types.ts";

/** Result of {@link validateTimeline}: the phases sorted by start, or why they were refused. */
export type TimelineResult = { ok: true; phases: Phase[] } | { ok: false; message: string };

const isValidDate = (d: Date): boolean => d instanceof Date && !Number.isNaN(d.getTime());

/**
 * Checks a contest timeline: at least one phase, named uniquely, each `startsAt < endsAt`, none
 * overlapping. Phases are half-open, so one may start at the instant the previous one ends.
 */
export function validateTimeline(phases: readonly Phase[]): TimelineResult {
  if (phases.length === 0) return { ok: false, message: "a contest needs at least one phase" };
  const names = new Set<string>();
  for (const p of phases) {
    if (p.name.length === 0) return { ok: false, message: "a phase needs a name" };
    if (names.has(p.name)) return { ok: false, message: `duplicate phase name "${p.name}"` };
    names.add(p.name);
    if (!isValidDate(p.startsAt) || !isValidDate(p.endsAt)) {
      return { ok: false, message: `phase "${p.name}" has an invalid time` };
    }
    if (p.endsAt.getTime() <= p.startsAt.getTime()) {
      return { ok: false, message: `phase "${p.name}" must end after it starts` };
    }
  }
  const sorted = [...phases].sort((a, b) => a.startsAt.getTime() - b.startsAt.getTime());
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const next = sorted[i]!;
    if (next.startsAt.getTime() < prev.endsAt.getTime()) {
      return { ok: false, message: `phases "${prev.name}" and "${next.name}" overlap` };
    }
  }
  return { ok: true, phases: sorted };
}

/** The phase whose half-open window `[startsAt, endsAt)` holds `now`, or null when the contest is closed. */
export function currentPhase(contest: Contest, now: Date): Phase | null {
  const t = now.getTime();
  // Contests hold a handful of phases; a scan beats keeping an index in sync.
  for (const p of contest.phases) {
    if (p.startsAt.getTime() <= t && t < p.endsAt.getTime()) return p;
  }
  return null;
}
