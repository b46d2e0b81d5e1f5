import type { Scope } from "@phaselock/core";
import { describe, expect, it } from "vitest";
import { decideAccess, phaseEndedAt } from "./access.ts";
import { indexClosures } from "./closures.ts";
import type { Revocation } from "./revocation-schema.ts";
import { RevocationIndex } from "./revocations.ts";
import type { Contest, LinkClaims, PolicySnapshot } from "./types.ts";

const contest: Contest = {
  id: "leadership-2020",
  name: "Leadership 2020",
  phases: [
    {
      name: "nominations",
      startsAt: new Date("2020-01-07T00:00:00Z"),
      endsAt: new Date("2020-02-14T00:00:00Z"),
      memberData: false,
    },
    {
      name: "ballot",
      startsAt: new Date("2020-02-24T00:00:00Z"),
      endsAt: new Date("2020-04-02T12:00:00Z"),
      memberData: true,
    },
  ],
};

type Closure = { contestId?: string; phase?: string; at: string };

const snapshot = (
  ballotScopes: Scope[],
  suspended: string[] = [],
  closures: Closure[] = [],
): PolicySnapshot => ({
  version: 1,
  contests: new Map([[contest.id, contest]]),
  campaigns: new Map([
    ["starmer-2020", { id: "starmer-2020", name: "Starmer", contestId: contest.id, limits: {} }],
  ]),
  entitlements: new Map([
    [
      "starmer-2020",
      new Map([
        ["ballot", new Set(ballotScopes)],
        ["nominations", new Set<Scope>(["calls:read"])],
      ]),
    ],
  ]),
  revocations: [],
  suspended: new Set(suspended),
  closures: indexClosures(
    closures.map((c) => ({
      contestId: c.contestId ?? contest.id,
      phase: c.phase ?? "ballot",
      closedAt: new Date(c.at),
    })),
  ),
});

const IAT = Date.parse("2020-02-01T00:00:00Z") / 1000;
const claims = (over: Partial<LinkClaims> = {}): LinkClaims => ({
  iss: "http://127.0.0.1:4000",
  aud: "phaselock-gateway",
  sub: "vol-1",
  jti: "lnk_1",
  iat: IAT,
  nbf: Date.parse("2020-02-24T00:00:00Z") / 1000,
  exp: Date.parse("2020-04-01T00:00:00Z") / 1000,
  cmp: "starmer-2020",
  cst: contest.id,
  phs: "ballot",
  scp: ["calls:read", "calls:write"],
  ...over,
});

const revokeLink: Revocation = {
  id: "rev_1",
  scope: "link",
  linkId: "lnk_1",
  reason: "lost phone",
  actor: "admin",
  effectiveAt: new Date("2020-03-01T00:00:00Z"),
};

const DURING = "2020-03-01T00:00:00Z";

describe("decideAccess", () => {
  it.each<{
    label: string;
    ent?: Scope[];
    c?: Partial<LinkClaims>;
    revoked?: boolean;
    suspended?: boolean;
    closures?: Closure[];
    scope: Scope | null | undefined;
    at?: string;
    want: string;
  }>([
    { label: "allowed: scope carried and entitled", scope: "calls:read", want: "allowed" },
    { label: "redemption mode: allowed", scope: undefined, want: "allowed" },
    { label: "exactly at phase start", scope: "calls:read", at: "2020-02-24T00:00:00Z", want: "allowed" },
    // each refusal alone
    { label: "revoked", revoked: true, scope: "calls:read", want: "revoked" },
    { label: "unknown contest", c: { cst: "nope" }, scope: "calls:read", want: "phase_closed" },
    { label: "between phases", scope: "calls:read", at: "2020-02-20T00:00:00Z", want: "phase_closed" },
    {
      label: "at phase end (half-open)",
      scope: "calls:read",
      at: "2020-04-02T12:00:00Z",
      want: "phase_closed",
    },
    { label: "link for another phase", c: { phs: "nominations" }, scope: "calls:read", want: "phase_closed" },
    { label: "unmapped route (null)", scope: null, want: "scope_denied" },
    { label: "scope not carried", scope: "members:read", ent: ["members:read"], want: "scope_denied" },
    { label: "entitlement withdrawn", ent: ["calls:write"], scope: "calls:read", want: "not_entitled" },
    { label: "no entitlement at all", c: { cmp: "other" }, scope: "calls:read", want: "not_entitled" },
    {
      label: "memberData false",
      c: { phs: "nominations" },
      scope: "calls:read",
      at: "2020-01-10T00:00:00Z",
      want: "not_entitled",
    },
    {
      label: "redemption: entitled to none of the link's scopes",
      ent: ["members:read"],
      scope: undefined,
      want: "not_entitled",
    },
    { label: "redemption: entitled to one of them", ent: ["calls:write"], scope: undefined, want: "allowed" },
    // order: the first failure answers
    { label: "revoked before phase_closed", revoked: true, c: { cst: "nope" }, scope: null, want: "revoked" },
    {
      label: "phase_closed before scope_denied",
      c: { phs: "nominations" },
      scope: null,
      want: "phase_closed",
    },
    { label: "scope_denied before not_entitled", ent: [], scope: "members:read", want: "scope_denied" },
    {
      label: "scope_denied before not_entitled (memberData false)",
      c: { phs: "nominations" },
      at: "2020-01-10T00:00:00Z",
      scope: null,
      want: "scope_denied",
    },
    // suspension is ours, not the contract's: reported only once every contract check passes
    { label: "suspended", suspended: true, scope: "calls:read", want: "suspended" },
    { label: "suspended, redemption mode", suspended: true, scope: undefined, want: "suspended" },
    {
      label: "another link suspended",
      suspended: true,
      c: { jti: "lnk_2" },
      scope: "calls:read",
      want: "allowed",
    },
    {
      label: "revoked before suspended",
      revoked: true,
      suspended: true,
      scope: "calls:read",
      want: "revoked",
    },
    {
      label: "phase_closed before suspended",
      suspended: true,
      at: "2020-02-20T00:00:00Z",
      scope: "calls:read",
      want: "phase_closed",
    },
    { label: "scope_denied before suspended", suspended: true, scope: null, want: "scope_denied" },
    {
      label: "not_entitled before suspended",
      suspended: true,
      ent: [],
      scope: "calls:read",
      want: "not_entitled",
    },
    // a phase ended early: links issued up to the closure second stay dead, even inside the window
    {
      label: "closed after issue, window re-opened",
      closures: [{ at: "2020-02-28T00:00:00Z" }],
      scope: "calls:read",
      want: "phase_closed",
    },
    {
      label: "closed within the issuing second",
      closures: [{ at: "2020-02-01T00:00:00.900Z" }],
      scope: "calls:read",
      want: "phase_closed",
    },
    {
      label: "issued the second after the closure",
      closures: [{ at: "2020-01-31T23:59:59.999Z" }],
      scope: "calls:read",
      want: "allowed",
    },
    {
      label: "the latest of several closures counts",
      closures: [{ at: "2020-01-20T00:00:00Z" }, { at: "2020-02-10T00:00:00Z" }],
      scope: "calls:read",
      want: "phase_closed",
    },
    {
      label: "closure of another phase",
      closures: [{ phase: "nominations", at: "2020-02-10T00:00:00Z" }],
      scope: "calls:read",
      want: "allowed",
    },
    {
      label: "closure of the same phase name in another contest",
      closures: [{ contestId: "ge-2019", at: "2020-02-10T00:00:00Z" }],
      scope: "calls:read",
      want: "allowed",
    },
    {
      label: "closed, redemption mode",
      closures: [{ at: "2020-02-10T00:00:00Z" }],
      scope: undefined,
      want: "phase_closed",
    },
    {
      label: "revoked before closed",
      revoked: true,
      closures: [{ at: "2020-02-10T00:00:00Z" }],
      scope: "calls:read",
      want: "revoked",
    },
    {
      label: "closed before scope_denied",
      closures: [{ at: "2020-02-10T00:00:00Z" }],
      scope: null,
      want: "phase_closed",
    },
    {
      label: "closed before suspended",
      suspended: true,
      closures: [{ at: "2020-02-10T00:00:00Z" }],
      scope: "calls:read",
      want: "phase_closed",
    },
  ])(
    "$label -> $want",
    ({ ent = ["calls:read", "calls:write"], c, revoked, suspended, closures, scope, at = DURING, want }) => {
      const d = decideAccess({
        snapshot: snapshot(ent, suspended ? ["lnk_1"] : [], closures),
        revocations: new RevocationIndex(revoked ? [revokeLink] : []),
        claims: claims(c),
        requiredScope: scope,
        now: new Date(at),
      });
      expect(d.allowed ? "allowed" : d.reason).toBe(want);
      if (d.allowed) expect(d.phase.name).toBe(claims(c).phs);
    },
  );
});

describe("phaseEndedAt: the time a phase_closed refusal names", () => {
  it.each<{ label: string; c?: Partial<LinkClaims>; closures?: Closure[]; at: string; want: string | null }>([
    { label: "the phase's end has passed", at: "2020-04-03T00:00:00Z", want: "2020-04-02T12:00:00.000Z" },
    {
      label: "closed early, window re-opened: the closure, not the end still to come",
      closures: [{ at: "2020-02-28T00:00:00Z" }],
      at: DURING,
      want: "2020-02-28T00:00:00.000Z",
    },
    {
      label: "closed early and the re-opened window has ended since: still the closure",
      closures: [{ at: "2020-02-28T00:00:00Z" }],
      at: "2020-04-03T00:00:00Z",
      want: "2020-02-28T00:00:00.000Z",
    },
    {
      label: "a timeline replaced with an end long past (its closure at the replacement): the end",
      closures: [{ at: "2020-04-05T00:00:00Z" }],
      at: "2020-04-06T00:00:00Z",
      want: "2020-04-02T12:00:00.000Z",
    },
    {
      label: "a closure before the link was issued: the phase's own end",
      closures: [{ at: "2020-01-20T00:00:00Z" }],
      at: "2020-04-03T00:00:00Z",
      want: "2020-04-02T12:00:00.000Z",
    },
    {
      label: "the phase has not started: no time",
      c: { phs: "ballot" },
      at: "2020-02-20T00:00:00Z",
      want: null,
    },
    {
      label: "a closure of another phase: no time while this one has not ended",
      closures: [{ phase: "nominations", at: "2020-02-10T00:00:00Z" }],
      at: "2020-02-20T00:00:00Z",
      want: null,
    },
    { label: "a phase gone from the timeline: no time", c: { phs: "hustings" }, at: DURING, want: null },
    { label: "an unknown contest: no time", c: { cst: "nope" }, at: DURING, want: null },
    {
      label: "a closure time ahead of this clock: not named",
      closures: [{ at: "2020-03-01T00:00:01Z" }],
      at: DURING,
      want: null,
    },
  ])("$label", ({ c, closures, at, want }) => {
    const ended = phaseEndedAt(snapshot([], [], closures), claims(c), new Date(at));
    expect(ended?.toISOString() ?? null).toBe(want);
  });
});
