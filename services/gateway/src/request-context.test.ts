import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { IP_HASH_MEMO_MAX, ipHash } from "./request-context.ts";

const expected = (key: string, ip: string) => createHmac("sha256", key).update(ip).digest("hex").slice(0, 32);

describe("ipHash", () => {
  const a = { ipHashKey: "a".repeat(43) };
  const b = { ipHashKey: "b".repeat(43) };

  it("is the keyed HMAC of the address, the first time and every time after (remembered)", () => {
    expect(ipHash(a, "203.0.113.7")).toBe(expected(a.ipHashKey, "203.0.113.7"));
    expect(ipHash(a, "203.0.113.7")).toBe(expected(a.ipHashKey, "203.0.113.7"));
    expect(ipHash(a, undefined)).toBeNull();
    expect(ipHash(a, "")).toBeNull();
  });

  it("remembers for its key only: another key never gets this key's hash", () => {
    const ip = "2001:db8::1";
    expect(ipHash(a, ip)).toBe(expected(a.ipHashKey, ip));
    expect(ipHash(b, ip)).toBe(expected(b.ipHashKey, ip));
    expect(ipHash({ ipHashKey: a.ipHashKey }, ip)).toBe(expected(a.ipHashKey, ip));
  });

  it("stays right past its bound (cleared when full, never a stale or mixed-up entry)", () => {
    const ips = Array.from({ length: IP_HASH_MEMO_MAX + 5 }, (_, i) => `198.51.${i >> 8}.${i & 255}`);
    for (const ip of ips) ipHash(b, ip);
    for (const ip of [ips[0]!, ips.at(-1)!, ips[IP_HASH_MEMO_MAX]!]) {
      expect(ipHash(b, ip)).toBe(expected(b.ipHashKey, ip));
    }
  });
});
