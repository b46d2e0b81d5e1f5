import { describe, expect, it } from "vitest";
import { indexClosures, phasesEndedEarly, phasesReopenedAfterEnd, reopenedClosures } from "./closures.ts";
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
      label: "running phase postponed: its run ends now",
      after: [nominations, { ...ballot, startsAt: d("2020-03-05T00:00:00Z") }, hustings],
      want: ["ballot"],
    },
    {
      label: "future phase postponed: nothing has run yet",
      after: [nominations, ballot, { ...hustings, startsAt: d("2020-04-12T00:00:00Z") }],
      want: [],
    },
    {
      label: "running phase starting earlier: still running",
      after: [nominations, { ...ballot, startsAt: d("2020-02-20T00:00:00Z") }, hustings],
      want: [],
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

describe("phasesReopenedAfterEnd", () => {
  // Before: the ballot was cut short to an end that has now passed; its links' exp outlive it.
  const cutBallot = { ...ballot, endsAt: d("2020-02-28T00:00:00Z") };
  it.each<{ label: string; after: Phase[]; closed?: Map<string, Date>; want: unknown[] }>([
    {
      label: "an ended phase re-opened: closed at its old end",
      after: [nominations, ballot, hustings],
      want: [{ phase: "ballot", closedAt: d("2020-02-28T00:00:00Z") }],
    },
    {
      label: "an ended phase re-opened to start later",
      after: [nominations, { ...ballot, startsAt: d("2020-03-05T00:00:00Z") }, hustings],
      want: [{ phase: "ballot", closedAt: d("2020-02-28T00:00:00Z") }],
    },
    { label: "an ended phase left over", after: [nominations, cutBallot, hustings], want: [] },
    { label: "an ended phase removed", after: [nominations, hustings], want: [] },
    {
      label: "already covered by a closure at or after that end",
      after: [nominations, ballot, hustings],
      closed: new Map([["ballot", d("2020-02-28T00:00:00Z")]]),
      want: [],
    },
    {
      label: "an older closure does not cover it",
      after: [nominations, ballot, hustings],
      closed: new Map([["ballot", d("2020-02-25T00:00:00Z")]]),
      want: [{ phase: "ballot", closedAt: d("2020-02-28T00:00:00Z") }],
    },
    {
      label: "a running phase extended",
      after: [nominations, cutBallot, { ...hustings, endsAt: d("2020-05-01T00:00:00Z") }],
      want: [],
    },
  ])("$label", ({ after, closed, want }) => {
    expect(phasesReopenedAfterEnd([nominations, cutBallot, hustings], after, closed, NOW)).toEqual(want);
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
