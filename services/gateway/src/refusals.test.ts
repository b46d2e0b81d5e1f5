import { errorStatus } from "@phaselock/core";
import { describe, expect, it } from "vitest";
import { landingStatus, REFUSALS, type RefusalCode, refusal, refusalPage, refusalTitle } from "./refusals.ts";

const codes = Object.keys(REFUSALS) as RefusalCode[];

describe("the refusal table", () => {
  it.each(codes)("%s: the status the shared code map gives it", (code) => {
    expect(refusal(code).status).toBe(errorStatus[code]);
  });

  it("landing page: 410 when the link never works again, 403 when it may later, 401 when invalid", () => {
    const landing = Object.fromEntries(codes.map((c) => [c, landingStatus(c)]));
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
      expect(landingStatus(c)).toBe(errorStatus[c]);
    }
  });

  it.each(codes)("%s: a page with its title and message, and a sentence for JSON", (code) => {
    const r = refusal(code, { startsAt: new Date(0), retryAfterSeconds: 5 });
    expect(r.message.length).toBeGreaterThan(10);
    const html = refusalPage(r);
    expect(html).toContain(`<title>${refusalTitle(code).replace(/'/g, "&#39;")}</title>`);
    expect(html).toContain(`Reference: ${code}`);
  });
});
