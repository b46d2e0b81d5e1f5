import type { Scope } from "@phaselock/core";
import { describe, expect, it } from "vitest";
import { checkIssuance, linkValidity } from "./issuance.ts";
import type { Contest, Phase } from "./types.ts";

const nominations: Phase = {
  name: "nominations",
  startsAt: new Date("2020-01-07T00:00:00Z"),
  endsAt: new Date("2020-02-14T00:00:00Z"),
  memberData: false,
};
const ballot: Phase = {
  name: "ballot",
  startsAt: new Date("2020-02-24T00:00:00Z"),
  endsAt: new Date("2020-04-02T12:00:00Z"),
  memberData: true,
};
const contest: Contest = { id: "leadership-2020", name: "Leadership 2020", phases: [nominations, ballot] };
const all = new Set<Scope>(["calls:read", "calls:write", "members:read", "members:export"]);
const calls = new Set<Scope>(["calls:read", "calls:write"]);

describe("checkIssuance", () => {
  it.each<[string, string, ReadonlySet<Scope> | undefined, Scope[], string, string]>([
    ["ballot, entitled, during", "ballot", calls, ["calls:read"], "2020-03-01T00:00:00Z", "ok"],
    ["ballot issued ahead (future phase)", "ballot", calls, ["calls:read"], "2020-02-01T00:00:00Z", "ok"],
    ["exactly at phase start", "ballot", calls, ["calls:read"], "2020-02-24T00:00:00Z", "ok"],
    ["unknown phase", "count", calls, ["calls:read"], "2020-03-01T00:00:00Z", "not_found"],
    [
      "unknown phase beats every other refusal",
      "x",
      undefined,
      ["members:export"],
      "2021-01-01",
      "not_found",
    ],
    ["members:export", "ballot", all, ["calls:read", "members:export"], "2020-03-01", "scope_not_issuable"],
    [
      "members:export on an ended phase",
      "ballot",
      all,
      ["members:export"],
      "2021-01-01",
      "scope_not_issuable",
    ],
    [
      "exactly at phase end (half-open)",
      "ballot",
      calls,
      ["calls:read"],
      "2020-04-02T12:00:00Z",
      "phase_closed",
    ],
    ["after phase end", "ballot", calls, ["calls:read"], "2020-05-01T00:00:00Z", "phase_closed"],
    [
      "half a second before the end: one whole second left",
      "ballot",
      calls,
      ["calls:read"],
      "2020-04-02T11:59:59.500Z",
      "ok",
    ],
    ["ended phase, not entitled too", "nominations", undefined, ["calls:read"], "2020-03-01", "phase_closed"],
    ["memberData false", "nominations", calls, ["calls:read"], "2020-01-10T00:00:00Z", "not_entitled"],
    ["no entitlement", "ballot", undefined, ["calls:read"], "2020-03-01T00:00:00Z", "not_entitled"],
    ["one scope missing", "ballot", calls, ["calls:read", "members:read"], "2020-03-01", "not_entitled"],
  ])("%s -> %s", (_label, phaseName, entitled, requested, at, want) => {
    const r = checkIssuance({ contest, phaseName, entitled, requested, now: new Date(at) });
    expect(r.ok ? "ok" : r.code).toBe(want);
    if (r.ok) expect(r.phase.name).toBe(phaseName);
  });

  it("refuses when the phase ends within the current second (the link could never be valid)", () => {
    const short: Contest = {
      ...contest,
      phases: [{ ...ballot, endsAt: new Date("2020-04-02T12:00:00.400Z") }],
    };
    const now = new Date("2020-04-02T12:00:00.100Z");
    const r = checkIssuance({
      contest: short,
      phaseName: "ballot",
      entitled: calls,
      requested: ["calls:read"],
      now,
    });
    expect(r).toEqual({ ok: false, code: "phase_closed" });
  });
});

const s = (iso: string): number => Date.parse(iso) / 1000;

describe("linkValidity", () => {
  it.each([
    [
      "during the phase: TTL from now",
      "2020-03-01T00:00:00Z",
      3600,
      "2020-03-01T00:00:00Z",
      "2020-03-01T01:00:00Z",
    ],
    [
      "clamped to the phase end",
      "2020-04-02T11:00:00Z",
      7 * 86400,
      "2020-04-02T11:00:00Z",
      "2020-04-02T12:00:00Z",
    ],
    [
      "issued ahead: nbf = phase start, full TTL",
      "2020-02-01T00:00:00Z",
      86400,
      "2020-02-24T00:00:00Z",
      "2020-02-25T00:00:00Z",
    ],
  ])("%s", (_label, at, ttlSeconds, nbf, exp) => {
    const now = new Date(at);
    expect(linkValidity({ phase: ballot, now, ttlSeconds })).toEqual({
      iat: s(at),
      nbf: s(nbf),
      exp: s(exp),
    });
  });

  it("rounds inward to whole seconds: nbf up, exp and iat down", () => {
    const odd: Phase = { ...ballot, startsAt: new Date(1000_500), endsAt: new Date(5000_700) };
    expect(linkValidity({ phase: odd, now: new Date(900_900), ttlSeconds: 10_000 })).toEqual({
      iat: 900,
      nbf: 1001,
      exp: 5000,
    });
  });
});
