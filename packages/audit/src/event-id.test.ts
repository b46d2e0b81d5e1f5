import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { eventId } from "./store.ts";

describe("eventId", () => {
  it("is evt_, 9 base-36 digits of time, 16 base64url characters of randomness", () => {
    expect(eventId(Date.UTC(2026, 11, 1))).toMatch(/^evt_[0-9a-z]{9}[A-Za-z0-9_-]{16}$/);
    expect(eventId(0)).not.toBe(eventId(0));
  });

  it("sorts by time: a later millisecond's id is greater, as text, whatever the random part", () => {
    // Until the year 5188, when 9 base-36 digits run out.
    const max = 36 ** 9 - 2;
    fc.assert(
      fc.property(fc.integer({ min: 0, max }), fc.integer({ min: 1, max: 86_400_000 }), (t, dt) => {
        const later = Math.min(max + 1, t + dt);
        expect(eventId(t) < eventId(later)).toBe(true);
      }),
    );
  });
});
