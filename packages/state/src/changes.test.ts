import { describe, expect, it } from "vitest";
import { type ChangeMessage, decodeChange, encodeChange } from "./changes.ts";
import { campaign, contest, linkRevocation, msg, T0 } from "./test-fixtures.ts";

describe("change messages", () => {
  const examples: ChangeMessage[] = [
    msg(1, { type: "revocation", revocation: linkRevocation("lnk_1") }),
    msg(2, {
      type: "revocation",
      revocation: {
        id: "rev_2",
        scope: "volunteer",
        volunteerRef: "vol-1",
        campaignId: null,
        reason: "left",
        actor: "key_1",
        effectiveAt: T0,
      },
    }),
    msg(3, { type: "contest", contest: contest() }),
    msg(4, { type: "campaign", campaign: campaign() }),
    msg(5, { type: "entitlement", campaignId: "starmer-2020", phase: "ballot", scopes: ["members:read"] }),
    msg(6, { type: "entitlement", campaignId: "starmer-2020", phase: "ballot", scopes: null }),
    msg(7, { type: "signing-key", kid: "k1", publicJwk: { kty: "OKP", crv: "Ed25519", x: "abc" } }),
    msg(8, { type: "api-key-deleted", id: "key_1" }),
    msg(9, { type: "link-suspended", linkId: "lnk_1", reason: "too many devices" }),
    msg(10, {
      type: "contest",
      contest: contest(),
      closures: [{ contestId: "leadership-2020", phase: "ballot", closedAt: T0 }],
    }),
    // The contact reaches every gateway's snapshot, for its refusal pages.
    msg(11, { type: "campaign", campaign: { ...campaign(), contact: "Jo Bloggs, 07700 900456" } }),
  ];

  it.each(examples.map((m) => [m.version, m.change.type, m] as const))(
    "round-trips #%i %s, restoring dates",
    (_, _type, m) => {
      const back = decodeChange(encodeChange(m));
      expect(back).toEqual(m);
    },
  );

  it("restores Date objects, not strings", () => {
    const back = decodeChange(encodeChange(msg(3, { type: "contest", contest: contest() })));
    if (back?.change.type !== "contest") throw new Error("expected a contest change");
    expect(back.change.contest.phases[0]!.startsAt).toBeInstanceOf(Date);
  });

  const valid = JSON.parse(encodeChange(examples[0]!)) as Record<string, unknown>;
  it.each([
    ["not JSON", "{"],
    ["a bare number", "42"],
    ["no version", JSON.stringify({ change: valid.change })],
    ["a negative version", JSON.stringify({ ...valid, version: -1 })],
    ["a fractional version", JSON.stringify({ ...valid, version: 1.5 })],
    ["an unknown type", JSON.stringify({ version: 1, change: { type: "drop-tables" } })],
    [
      "a link revocation without linkId",
      JSON.stringify({
        version: 1,
        change: {
          type: "revocation",
          revocation: { id: "r", scope: "link", reason: "", actor: "a", effectiveAt: T0.toISOString() },
        },
      }),
    ],
    ["an unparseable date", encodeChange(examples[0]!).replace(T0.toISOString(), "yesterday")],
    ["an unknown scope", encodeChange(examples[4]!).replace("members:read", "members:everything")],
    [
      "a non-string JWK member",
      JSON.stringify({ version: 1, change: { type: "signing-key", kid: "k", publicJwk: { x: 1 } } }),
    ],
  ])("drops a message with %s", (_, raw) => {
    expect(decodeChange(raw)).toBeUndefined();
  });
});
