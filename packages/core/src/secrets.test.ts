import { describe, expect, it } from "vitest";
import { epochSeconds, FakeClock } from "./clock.ts";
import { randomId, safeEqual } from "./secrets.ts";

describe("safeEqual", () => {
  it.each([
    ["same", "same", true],
    ["same", "samf", false],
    ["short", "longer-secret", false],
    ["", "", true],
  ])("%s vs %s -> %s", (a, b, want) => expect(safeEqual(a, b)).toBe(want));
});

describe("randomId", () => {
  it("is prefixed and unique", () => {
    const a = randomId("lnk");
    expect(a).toMatch(/^lnk_[A-Za-z0-9_-]{22}$/);
    expect(randomId("lnk")).not.toBe(a);
  });
});

describe("FakeClock", () => {
  it("moves only when told", () => {
    const c = new FakeClock("2020-01-01T00:00:00Z");
    expect(epochSeconds(c.now())).toBe(1577836800);
    c.advance(1500);
    expect(c.now().toISOString()).toBe("2020-01-01T00:00:01.500Z");
  });
});

describe("randomId from the pool", () => {
  it("never repeats across pool refills and keeps its length", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) seen.add(randomId("evt"));
    expect(seen.size).toBe(2000);
    expect([...seen].every((id) => /^evt_[A-Za-z0-9_-]{22}$/.test(id))).toBe(true);
    expect(randomId("big", 5000)).toMatch(/^big_[A-Za-z0-9_-]{6667}$/);
  });
});
