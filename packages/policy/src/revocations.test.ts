import { describe, expect, it } from "vitest";
import type { Revocation } from "./revocation-schema.ts";
import { RevocationIndex } from "./revocations.ts";
import type { LinkClaims } from "./types.ts";

const EFFECTIVE = new Date("2020-03-01T12:00:00.750Z");
const SECOND = Math.floor(EFFECTIVE.getTime() / 1000);

const claims = (over: Partial<LinkClaims> = {}): LinkClaims => ({
  iss: "http://127.0.0.1:4000",
  aud: "phaselock-gateway",
  sub: "vol-1",
  jti: "lnk_1",
  iat: SECOND,
  nbf: SECOND,
  exp: SECOND + 3600,
  cmp: "starmer-2020",
  cst: "leadership-2020",
  phs: "ballot",
  scp: ["calls:read"],
  ...over,
});

type RevocationFields = Partial<Omit<Revocation, "scope">> & { scope?: Revocation["scope"] } & Record<
    string,
    unknown
  >;

// Loosely typed on purpose: some cases hand the index a revocation its scope's type forbids.
const rev = (over: RevocationFields): Revocation =>
  ({
    id: "rev_1",
    scope: "all",
    reason: "test",
    actor: "admin",
    effectiveAt: EFFECTIVE,
    ...over,
  }) as Revocation;

describe("RevocationIndex.covers", () => {
  it.each<[string, RevocationFields, Partial<LinkClaims>, boolean]>([
    // link: by id, whatever the time
    ["link: same jti", { scope: "link", linkId: "lnk_1" }, {}, true],
    ["link: same jti issued later", { scope: "link", linkId: "lnk_1" }, { iat: SECOND + 999 }, true],
    ["link: other jti", { scope: "link", linkId: "lnk_2" }, {}, false],
    // all
    ["all: iat at the effectiveAt second", {}, {}, true],
    ["all: iat earlier", {}, { iat: SECOND - 100 }, true],
    ["all: iat one second later", {}, { iat: SECOND + 1 }, false],
    // contest
    ["contest: match at the second", { scope: "contest", contestId: "leadership-2020" }, {}, true],
    [
      "contest: one second later",
      { scope: "contest", contestId: "leadership-2020" },
      { iat: SECOND + 1 },
      false,
    ],
    ["contest: other contest", { scope: "contest", contestId: "ge-2019" }, {}, false],
    // phase: contest and phase both match
    ["phase: both match", { scope: "phase", contestId: "leadership-2020", phase: "ballot" }, {}, true],
    [
      "phase: one second later",
      { scope: "phase", contestId: "leadership-2020", phase: "ballot" },
      { iat: SECOND + 1 },
      false,
    ],
    ["phase: other phase", { scope: "phase", contestId: "leadership-2020", phase: "nominations" }, {}, false],
    ["phase: same name, other contest", { scope: "phase", contestId: "ge-2019", phase: "ballot" }, {}, false],
    // campaign
    ["campaign: match", { scope: "campaign", campaignId: "starmer-2020" }, {}, true],
    [
      "campaign: one second later",
      { scope: "campaign", campaignId: "starmer-2020" },
      { iat: SECOND + 1 },
      false,
    ],
    ["campaign: other campaign", { scope: "campaign", campaignId: "long-bailey-2020" }, {}, false],
    // volunteer, with and without campaign
    ["volunteer, any campaign", { scope: "volunteer", volunteerRef: "vol-1" }, {}, true],
    ["volunteer, any campaign, other cmp", { scope: "volunteer", volunteerRef: "vol-1" }, { cmp: "x" }, true],
    [
      "volunteer, one second later",
      { scope: "volunteer", volunteerRef: "vol-1" },
      { iat: SECOND + 1 },
      false,
    ],
    ["volunteer, other ref", { scope: "volunteer", volunteerRef: "vol-2" }, {}, false],
    [
      "volunteer in campaign: match",
      { scope: "volunteer", volunteerRef: "vol-1", campaignId: "starmer-2020" },
      {},
      true,
    ],
    [
      "volunteer in campaign: other campaign",
      { scope: "volunteer", volunteerRef: "vol-1", campaignId: "long-bailey-2020" },
      {},
      false,
    ],
    [
      "volunteer in campaign: one second later",
      { scope: "volunteer", volunteerRef: "vol-1", campaignId: "starmer-2020" },
      { iat: SECOND + 1 },
      false,
    ],
  ])("%s -> %s", (_label, r, c, want) => {
    const index = new RevocationIndex([rev(r)]);
    expect(index.covers(claims(c))?.id ?? null).toBe(want ? "rev_1" : null);
  });

  it("keeps the latest watermark per key, whatever the order added", () => {
    const early = rev({
      id: "rev_early",
      scope: "campaign",
      campaignId: "starmer-2020",
      effectiveAt: new Date(0),
    });
    const late = rev({ id: "rev_late", scope: "campaign", campaignId: "starmer-2020" });
    for (const order of [
      [early, late],
      [late, early],
    ]) {
      const index = new RevocationIndex(order);
      expect(index.covers(claims())?.id).toBe("rev_late");
      expect(index.covers(claims({ iat: SECOND + 1 }))).toBeUndefined();
    }
  });

  it("add() takes effect at once", () => {
    const index = new RevocationIndex();
    expect(index.covers(claims())).toBeUndefined();
    index.add(rev({ scope: "link", linkId: "lnk_1" }));
    expect(index.covers(claims())?.id).toBe("rev_1");
    expect(index.size).toBe(1);
  });

  it("does not confuse composite keys whose parts contain the separator", () => {
    const index = new RevocationIndex([rev({ scope: "phase", contestId: "a|b", phase: "c" })]);
    expect(index.covers(claims({ cst: "a", phs: "b|c" }))).toBeUndefined();
    expect(index.covers(claims({ cst: "a|b", phs: "c" }))?.id).toBe("rev_1");
  });

  it.each<RevocationFields>([
    { scope: "link" },
    { scope: "volunteer", campaignId: "starmer-2020" },
    { scope: "campaign" },
    { scope: "phase", contestId: "leadership-2020" },
    { scope: "contest", contestId: "" },
  ])("throws on a revocation missing its key: %o", (r) => {
    expect(() => new RevocationIndex([rev(r)])).toThrow(/rev_1/);
  });
});
