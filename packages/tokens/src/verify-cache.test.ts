import * as jose from "jose";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { claimsAt, setup, T0_SECONDS } from "./test-support.ts";
import { VerifyCache } from "./verify-cache.ts";

// Wraps the real jwtVerify so the tests can count signature checks.
vi.mock("jose", async (importOriginal) => {
  const actual = await importOriginal<typeof import("jose")>();
  return { ...actual, jwtVerify: vi.fn(actual.jwtVerify) };
});
const jwtVerify = vi.mocked(jose.jwtVerify);

beforeEach(() => {
  jwtVerify.mockClear();
});

describe("verifier with a cache", () => {
  it("a hit returns the same claims without calling jose", async () => {
    const cache = new VerifyCache();
    const { verifier, sign } = await setup({ cache });
    const token = await sign();
    const first = await verifier.verify(token);
    const second = await verifier.verify(token);
    expect(first).toEqual({ ok: true, claims: claimsAt() });
    expect(second).toEqual(first);
    expect(jwtVerify).toHaveBeenCalledTimes(1);
    expect(cache.size).toBe(1);
  });

  it("a cached token's other spellings still miss and are refused (the cache is checked before the canonical form)", async () => {
    const cache = new VerifyCache();
    const { verifier, sign } = await setup({ cache });
    const token = await sign();
    expect((await verifier.verify(token)).ok).toBe(true);
    const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = B64URL.indexOf(token.at(-1)!);
    for (const spelling of [`${token} `, ` ${token}`, `${token}\n`, token.slice(0, -1) + B64URL[last ^ 1]]) {
      expect(await verifier.verify(spelling)).toEqual({ ok: false, reason: "token_invalid" });
    }
    expect(cache.size).toBe(1);
    expect(cache.misses).toBe(5);
    expect(cache.hits).toBe(0);
  });

  it("cached claims cannot be altered by a caller", async () => {
    const { verifier, sign } = await setup({ cache: new VerifyCache() });
    const r = await verifier.verify(await sign());
    if (!r.ok) throw new Error("expected ok");
    expect(() => r.claims.scp.push("members:read")).toThrow();
    expect(() => {
      (r.claims as { sub: string }).sub = "someone-else";
    }).toThrow();
  });

  it("a hit still checks exp: the entry never outlives it", async () => {
    const cache = new VerifyCache();
    const { verifier, clock, sign } = await setup({ cache });
    const token = await sign();
    expect((await verifier.verify(token)).ok).toBe(true);
    clock.advance(3599_000);
    expect((await verifier.verify(token)).ok).toBe(true);
    expect(jwtVerify).toHaveBeenCalledTimes(1);
    clock.advance(1_000);
    expect(await verifier.verify(token)).toMatchObject({ ok: false, reason: "expired" });
    expect(cache.size).toBe(0);
  });

  it("a hit still checks nbf: a link issued ahead is cached but refused until it starts", async () => {
    const { verifier, clock, sign } = await setup({ cache: new VerifyCache() });
    const token = await sign({ nbf: T0_SECONDS + 60 });
    expect(await verifier.verify(token)).toMatchObject({ ok: false, reason: "not_yet_valid" });
    expect(await verifier.verify(token)).toMatchObject({ ok: false, reason: "not_yet_valid" });
    clock.advance(60_000);
    expect((await verifier.verify(token)).ok).toBe(true);
    expect(jwtVerify).toHaveBeenCalledTimes(1);
  });

  it("refusals are not cached", async () => {
    const cache = new VerifyCache();
    const { verifier, sign } = await setup({ cache });
    const t = await sign();
    const bad = `${t.slice(0, -4)}AAAA`;
    await verifier.verify(bad);
    await verifier.verify(bad);
    expect(jwtVerify).toHaveBeenCalledTimes(2);
    expect(cache.size).toBe(0);
  });

  it("a key dropped from the ring stops its cached tokens at once", async () => {
    const { verifier, ring, key, sign } = await setup({ cache: new VerifyCache() });
    const token = await sign();
    expect((await verifier.verify(token)).ok).toBe(true);
    ring.remove(key.kid);
    expect(await verifier.verify(token)).toEqual({ ok: false, reason: "token_invalid" });
  });
});

describe("VerifyCache", () => {
  const entry = (jti: string, exp = T0_SECONDS + 60) => ({ claims: claimsAt({ jti, exp }), kid: "k" });

  it("evicts the least recently used entry beyond its bound", () => {
    const cache = new VerifyCache({ maxEntries: 2 });
    cache.set("a", entry("a"));
    cache.set("b", entry("b"));
    expect(cache.get("a", T0_SECONDS)).toBeDefined(); // a is now the most recent
    cache.set("c", entry("c"));
    expect(cache.size).toBe(2);
    expect(cache.get("b", T0_SECONDS)).toBeUndefined();
    expect(cache.get("a", T0_SECONDS)?.claims.jti).toBe("a");
    expect(cache.get("c", T0_SECONDS)?.claims.jti).toBe("c");
  });

  it("drops an entry at its exp second", () => {
    const cache = new VerifyCache();
    cache.set("a", entry("a", T0_SECONDS + 10));
    expect(cache.get("a", T0_SECONDS + 9)).toBeDefined();
    expect(cache.get("a", T0_SECONDS + 10)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it("defaults to 100k entries and refuses a silly bound", () => {
    expect(new VerifyCache().maxEntries).toBe(100_000);
    expect(() => new VerifyCache({ maxEntries: 0 })).toThrow(RangeError);
  });
});

describe("VerifyCache under one busy token", () => {
  it("a hit on a young entry does not reorder the map; an old one still moves up", () => {
    const cache = new VerifyCache({ maxEntries: 4 });
    const entry = { claims: claimsAt(), kid: "k" };
    for (const k of ["a", "b", "c", "d"]) cache.set(k, entry);
    // "a" is in the older half: a hit moves it to the young end, so "b" is evicted next.
    expect(cache.get("a", 0)).toBeDefined();
    cache.set("e", entry);
    expect(cache.get("b", 0)).toBeUndefined();
    expect(cache.get("a", 0)).toBeDefined();
    for (let i = 0; i < 1000; i++) expect(cache.get("e", 0)).toBeDefined();
    expect(cache.size).toBe(4);
  });
});
