import { describe, expect, it } from "vitest";
import { CallStore } from "./calls.ts";
import { createMemberDirectory } from "./members.ts";

const members = createMemberDirectory({ count: 10 });
const ctx = { campaign: "cmp_a", volunteer: null, link: null };
const at = new Date("2026-12-01T12:00:00Z");
const answered = { outcome: "answered" as const, notes: null, volunteer: null };

describe("CallStore", () => {
  it("forgets the oldest calls past maxCalls, in the order they were handed out", () => {
    const store = new CallStore({ members, maxCalls: 3 });
    const ids = Array.from({ length: 8 }, () => store.next(ctx, at).call.id);
    // The five oldest are forgotten; the three newest can still be recorded.
    for (const id of ids.slice(0, 5))
      expect(store.record(id, "cmp_a", answered, at)).toEqual({ ok: false, reason: "not_found" });
    for (const id of ids.slice(5)) expect(store.record(id, "cmp_a", answered, at).ok).toBe(true);
  });

  it("keeps exactly maxCalls calls round after round", () => {
    const store = new CallStore({ members, maxCalls: 4 });
    const ids = Array.from({ length: 4 * 5 + 2 }, () => store.next(ctx, at).call.id);
    const kept = ids.filter((id) => store.record(id, "cmp_a", answered, at).ok);
    expect(kept).toEqual(ids.slice(-4));
  });

  it("refuses a maxCalls that is not a positive integer", () => {
    for (const maxCalls of [0, -1, 1.5, Number.NaN])
      expect(() => new CallStore({ members, maxCalls })).toThrow(RangeError);
  });
});
