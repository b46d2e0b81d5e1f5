import { errorStatus } from "@phaselock/core";
import { describe, expect, it } from "vitest";
import { landingStatus, REFUSALS, type RefusalCode, refusal, refusalPage, refusalTitle } from "./refusals.ts";

const codes = Object.keys(REFUSALS) as RefusalCode[];

describe("the refusal table", () => {
  it.each(codes)("%s: the status the shared code map gives it", (code) => {
    expect(refusal(code).status).toBe(errorStatus[code]);
  });

  it("landing page: 410 when the link never works again, 403 when it may later, 401 when invalid", () => {
    const landing = Object.fromEntries(codes.map((c) => [c, landingStatus(refusal(c))]));
    expect(landing).toMatchObject({
      expired: 410,
      phase_closed: 410,
      revoked: 410,
      uses_exhausted: 410,
      suspended: 410,
      not_yet_valid: 403,
      not_entitled: 403,
      token_invalid: 401,
      token_missing: 401,
    });
    for (const c of ["scope_denied", "rate_limited", "unavailable"] as const) {
      expect(landingStatus(refusal(c))).toBe(errorStatus[c]);
    }
    // A phase postponed before it began takes the link once it starts: "may later".
    const postponed = refusal("phase_closed", {
      phaseName: "ballot",
      contestName: "Leadership",
      phaseStartsAt: new Date("2030-01-01T00:00:00Z"),
    });
    expect(landingStatus(postponed)).toBe(403);
    expect(postponed.message).toContain("now starts at Tue 1 Jan 2030, 00:00 UTC");
    expect(landingStatus(refusal("phase_closed", { endedAt: new Date("2020-01-01T00:00:00Z") }))).toBe(410);
  });

  it("rate_limited says when to try again in plain words: 1 second, 30 seconds", () => {
    expect(refusal("rate_limited", { retryAfterSeconds: 1 }).message).toBe(
      "Too many requests. Try again in 1 second.",
    );
    expect(refusal("rate_limited", { retryAfterSeconds: 30 }).message).toBe(
      "Too many requests. Try again in 30 seconds.",
    );
  });

  it.each(codes)("%s: a page with its title and message, and a sentence for JSON", (code) => {
    const r = refusal(code, { startsAt: new Date(0), retryAfterSeconds: 5 });
    expect(r.message.length).toBeGreaterThan(10);
    const html = refusalPage(r);
    expect(html).toContain(`<title>${refusalTitle(code).replace(/'/g, "&#39;")}</title>`);
    expect(html).toContain(`Reference: ${code}`);
  });
});
