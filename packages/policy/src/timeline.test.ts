import { describe, expect, it } from "vitest";
import { currentPhase, validateTimeline } from "./timeline.ts";
import type { Contest, Phase } from "./types.ts";

const phase = (name: string, startsAt: string, endsAt: string, memberData = true): Phase => ({
  name,
  startsAt: new Date(startsAt),
  endsAt: new Date(endsAt),
  memberData,
});

const nominations = phase("nominations", "2020-01-07T00:00:00Z", "2020-02-14T00:00:00Z", false);
const ballot = phase("ballot", "2020-02-24T00:00:00Z", "2020-04-02T12:00:00Z");
const contest: Contest = { id: "leadership-2020", name: "Leadership 2020", phases: [nominations, ballot] };

describe("currentPhase", () => {
  it.each([
    ["before the first phase", "2020-01-06T23:59:59.999Z", null],
    ["exactly at the first start (inside)", "2020-01-07T00:00:00Z", "nominations"],
    ["inside the first", "2020-02-01T00:00:00Z", "nominations"],
    ["one ms before the first ends", "2020-02-13T23:59:59.999Z", "nominations"],
    ["exactly at the first end (outside, half-open)", "2020-02-14T00:00:00Z", null],
    ["between phases", "2020-02-20T00:00:00Z", null],
    ["exactly at the second start", "2020-02-24T00:00:00Z", "ballot"],
    ["exactly at the last end", "2020-04-02T12:00:00Z", null],
    ["after the last", "2021-01-01T00:00:00Z", null],
  ])("%s -> %s", (_label, at, want) => {
    expect(currentPhase(contest, new Date(at))?.name ?? null).toBe(want);
  });

  it("hands over at the shared instant of back-to-back phases", () => {
    const a = phase("a", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z");
    const b = phase("b", "2020-01-02T00:00:00Z", "2020-01-03T00:00:00Z");
    const c: Contest = { id: "c", name: "c", phases: [a, b] };
    expect(currentPhase(c, new Date("2020-01-01T23:59:59.999Z"))?.name).toBe("a");
    expect(currentPhase(c, new Date("2020-01-02T00:00:00Z"))?.name).toBe("b");
  });
});

describe("validateTimeline", () => {
  it("sorts the phases by start", () => {
    const r = validateTimeline([ballot, nominations]);
    expect(r).toEqual({ ok: true, phases: [nominations, ballot] });
  });

  it("accepts back-to-back phases (half-open windows)", () => {
    const r = validateTimeline([
      phase("a", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"),
      phase("b", "2020-01-02T00:00:00Z", "2020-01-03T00:00:00Z"),
    ]);
    expect(r.ok).toBe(true);
  });

  it.each<[string, Phase[]]>([
    ["empty list", []],
    ["reversed phase", [phase("a", "2020-01-02T00:00:00Z", "2020-01-01T00:00:00Z")]],
    ["zero-length phase", [phase("a", "2020-01-01T00:00:00Z", "2020-01-01T00:00:00Z")]],
    ["invalid date", [phase("a", "not a date", "2020-01-01T00:00:00Z")]],
    ["empty name", [phase("", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z")]],
    [
      "overlapping phases",
      [
        phase("a", "2020-01-01T00:00:00Z", "2020-01-03T00:00:00Z"),
        phase("b", "2020-01-02T00:00:00Z", "2020-01-04T00:00:00Z"),
      ],
    ],
    [
      "overlap by one millisecond, given out of order",
      [
        phase("b", "2020-01-01T23:59:59.999Z", "2020-01-04T00:00:00Z"),
        phase("a", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"),
      ],
    ],
    [
      "one phase inside another",
      [
        phase("outer", "2020-01-01T00:00:00Z", "2020-01-10T00:00:00Z"),
        phase("inner", "2020-01-02T00:00:00Z", "2020-01-03T00:00:00Z"),
      ],
    ],
    [
      "duplicate name",
      [
        phase("a", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"),
        phase("a", "2020-01-03T00:00:00Z", "2020-01-04T00:00:00Z"),
      ],
    ],
    [
      "duplicate phase",
      [
        phase("a", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"),
        phase("a", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"),
      ],
    ],
  ])("refuses %s", (_label, phases) => {
    const r = validateTimeline(phases);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).not.toBe("");
  });
});
