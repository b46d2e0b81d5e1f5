import { describe, expect, it } from "vitest";
import { indexClosures, phasesEndedEarly, reopenedClosures } from "./closures.ts";
import type { Phase } from "./types.ts";

const NOW = new Date("2020-03-01T00:00:00Z");
const d = (s: string) => new Date(s);
const phase = (name: string, startsAt: string, endsAt: string): Phase => ({
  name,
  startsAt: d(startsAt),
  endsAt: d(endsAt),
  memberData: true,
});

const nominations = phase("nominations", "2020-01-07T00:00:00Z", "2020-02-14T00:00:00Z");
const ballot = phase("ballot", "2020-02-24T00:00:00Z", "2020-04-02T12:00:00Z");
const hustings = phase("hustings", "2020-04-10T00:00:00Z", "2020-04-20T00:00:00Z");

describe("phasesEndedEarly", () => {
  it.each<{ label: string; after: Phase[]; want: string[] }>([
    { label: "unchanged", after: [nominations, ballot, hustings], want: [] },
    {
      label: "running phase now over",
      after: [nominations, { ...ballot, endsAt: d("2020-02-28T00:00:00Z") }, hustings],
      want: ["ballot"],
    },
    {
      label: "running phase ending exactly now",
      after: [nominations, { ...ballot, endsAt: NOW }, hustings],
      want: ["ballot"],
    },
    {
      label: "running phase shortened to a later end: ends when that comes",
      after: [nominations, { ...ballot, endsAt: d("2020-03-10T00:00:00Z") }, hustings],
      want: [],
    },
    { label: "running phase removed", after: [nominations, hustings], want: ["ballot"] },
    { label: "future phase removed", after: [nominations, ballot], want: ["hustings"] },
    {
      label: "future phase moved into the past",
      after: [nominations, ballot, phase("hustings", "2020-02-15T00:00:00Z", "2020-02-20T00:00:00Z")],
      want: ["hustings"],
    },
    {
      label: "a phase that had already ended, moved earlier",
      after: [{ ...nominations, endsAt: d("2020-02-01T00:00:00Z") }, ballot, hustings],
      want: [],
    },
  ])("$label", ({ after, want }) => {
    expect(phasesEndedEarly([nominations, ballot, hustings], after, NOW)).toEqual(want);
  });
});

describe("reopenedClosures", () => {
  const contest = { id: "leadership-2020", name: "L", phases: [nominations, ballot, hustings] };
  it("names closed phases whose window is open or due again, not those that stay over", () => {
    const index = indexClosures([
      { contestId: contest.id, phase: "ballot", closedAt: d("2020-02-28T00:00:00Z") },
      { contestId: contest.id, phase: "nominations", closedAt: d("2020-02-01T00:00:00Z") },
      { contestId: "other", phase: "hustings", closedAt: d("2020-02-01T00:00:00Z") },
    ]);
    expect(reopenedClosures(contest, index, NOW)).toEqual([
      { phase: "ballot", closedAt: d("2020-02-28T00:00:00Z") },
    ]);
  });

  it("keeps the latest closure of a phase", () => {
    const index = indexClosures([
      { contestId: "c", phase: "p", closedAt: d("2020-02-28T00:00:00Z") },
      { contestId: "c", phase: "p", closedAt: d("2020-02-01T00:00:00Z") },
    ]);
    expect(index.get("c")?.get("p")).toEqual(d("2020-02-28T00:00:00Z"));
  });
});
