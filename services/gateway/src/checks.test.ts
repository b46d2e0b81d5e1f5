import type { LinkClaims } from "@phaselock/policy";
import { T0_SECONDS } from "@phaselock/tokens/testing";
import { describe, expect, it } from "vitest";
import { checkRequest } from "./checks.ts";
import { refusal } from "./refusals.ts";
import { gatewayFixture } from "./test-support.ts";

/** The contract's order (README "How a request is checked"), with ours where the gateway adds it. */
const ORDER = [
  "token_missing",
  "token_invalid",
  "expired",
  "not_yet_valid",
  "unavailable: policy state stale",
  "revoked",
  "phase_closed",
  "scope_denied",
  "not_entitled",
  "suspended",
  "unavailable: audit not writable",
  "rate_limited",
  "quota_exceeded",
] as const;
type Step = (typeof ORDER)[number];

/** Claims that fail at `first` and at as many later token checks as one token can. */
function claimsFailingFrom(first: Step): Partial<LinkClaims> {
  const wrongPhase = { phs: "nominations", scp: ["calls:read"] } satisfies Partial<LinkClaims>;
  switch (first) {
    case "not_yet_valid":
      return { ...wrongPhase, nbf: T0_SECONDS + 7200, exp: T0_SECONDS + 9000 };
    case "scope_denied":
      return { cmp: "long-bailey-2020", scp: ["calls:read"] };
    case "not_entitled":
      return { cmp: "long-bailey-2020", scp: ["calls:read", "members:read"] };
    case "suspended":
    case "unavailable: audit not writable":
    case "rate_limited":
    case "quota_exceeded":
      return {};
    default:
      return wrongPhase;
  }
}

describe("checkRequest: every check in the contract's order, the first failure answers", () => {
  it.each(ORDER.map((s) => [s]))("%s, with every later check failing too", async (first) => {
    const g = await gatewayFixture();
    const fails = (s: Step) => ORDER.indexOf(s) >= ORDER.indexOf(first);
    const jti = "lnk_order";
    const token = await g.issue({ jti, ...claimsFailingFrom(first) });
    if (first === "expired") g.clock.set((T0_SECONDS + 3600) * 1000);
    if (fails("unavailable: policy state stale")) g.setFresh(false);
    if (fails("revoked")) {
      g.revocations.add({
        id: "rev_order",
        scope: "link",
        linkId: jti,
        reason: "test",
        actor: "admin",
        effectiveAt: new Date((T0_SECONDS - 60) * 1000),
      });
    }
    if (fails("suspended")) g.suspended.add(jti);
    if (fails("unavailable: audit not writable")) g.setAuditHealthy(false);
    if (fails("rate_limited")) g.deps.limits.request = async () => refusal("rate_limited");
    if (fails("quota_exceeded")) {
      // The quota is read in the same store call as the rate limits, after them.
      const request = g.deps.limits.request;
      g.deps.limits.request = async (...args) =>
        (await request(...args)) ?? (args[3]?.recordsLeft ? refusal("quota_exceeded") : null);
    }
    const credential =
      first === "token_missing" ? undefined : first === "token_invalid" ? "not.a.token" : token;

    const outcome = await checkRequest(g.deps, {
      credential,
      scope: "members:read",
      meter: { assignsRecord: true },
    });

    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.refusal.code).toBe(first.split(":")[0]);
    // nothing can record a refusal when the audit trail cannot be written
    expect(outcome.audit).toBe(first !== "unavailable: audit not writable");
  });

  it("fails closed on a stale policy state even with earlier failures fixed, before revocation", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_stale", phs: "nominations" });
    g.setFresh(false);
    const outcome = await checkRequest(g.deps, { credential: token, scope: "calls:read" });
    expect(outcome.ok ? null : outcome.refusal.code).toBe("unavailable");
    g.setFresh(true);
    const again = await checkRequest(g.deps, { credential: token, scope: "calls:read" });
    expect(again.ok ? null : again.refusal.code).toBe("phase_closed");
  });

  it("meters only upstream requests: the landing page and redemption pass with limits spent", async () => {
    const g = await gatewayFixture();
    const token = await g.issue();
    g.setAuditHealthy(false);
    g.deps.limits.request = async () => refusal("rate_limited");
    expect((await checkRequest(g.deps, { credential: token })).ok).toBe(true);
    const metered = await checkRequest(g.deps, {
      credential: token,
      scope: "calls:read",
      meter: { assignsRecord: false },
    });
    expect(metered.ok ? null : metered.refusal.code).toBe("unavailable");
  });

  it("answers unavailable when the limit store cannot count", async () => {
    const g = await gatewayFixture();
    const token = await g.issue();
    g.deps.limits.request = async () => {
      throw new Error("store down");
    };
    const outcome = await checkRequest(g.deps, {
      credential: token,
      scope: "calls:read",
      meter: { assignsRecord: false },
    });
    expect(outcome.ok ? null : [outcome.refusal.code, outcome.audit]).toEqual(["unavailable", true]);
  });
});
