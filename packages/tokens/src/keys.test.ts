import { describe, expect, it } from "vitest";
import { generateSigningKey, KeyRing, publicJwks } from "./keys.ts";

describe("generateSigningKey", () => {
  it("makes an Ed25519 key whose kid is its public key thumbprint", async () => {
    const k = await generateSigningKey();
    expect(k.publicJwk).toEqual({
      kty: "OKP",
      crv: "Ed25519",
      x: expect.any(String),
      kid: k.kid,
      alg: "EdDSA",
      use: "sig",
    });
    expect(k.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(k.privatePkcs8.startsWith(`-----BEGIN ${"PRIVATE"} KEY-----`)).toBe(true);
    expect(k.privateKey.extractable).toBe(false);
    expect((await generateSigningKey()).kid).not.toBe(k.kid);
  });
});

describe("KeyRing and publicJwks", () => {
  it("publishes exactly the JWKS shape, no private material", async () => {
    const a = await generateSigningKey();
    const b = await generateSigningKey();
    const ring = await KeyRing.from({ keys: [a.publicJwk, b.publicJwk] });
    const jwks = publicJwks(ring);
    expect(jwks).toEqual({ keys: [a.publicJwk, b.publicJwk] });
    for (const k of jwks.keys)
      expect(Object.keys(k).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x"]);
  });

  it("imports each key once: set() with a kid already held keeps its CryptoKey", async () => {
    const a = await generateSigningKey();
    const b = await generateSigningKey();
    const ring = new KeyRing();
    await ring.add(a.kid, a.publicJwk);
    const before = ring.get(a.kid);
    await ring.set({ keys: [a.publicJwk, b.publicJwk] });
    expect(ring.get(a.kid)).toBe(before);
    expect(ring.size).toBe(2);
  });

  it("set() replaces the keys, all or nothing", async () => {
    const a = await generateSigningKey();
    const b = await generateSigningKey();
    const ring = await KeyRing.from({ keys: [a.publicJwk] });
    await expect(ring.set({ keys: [b.publicJwk, { kty: "RSA", kid: "x" }] })).rejects.toMatchObject({
      code: "jwk_invalid",
    });
    expect(ring.has(a.kid)).toBe(true);
    expect(ring.has(b.kid)).toBe(false);
    await ring.set({ keys: [b.publicJwk] });
    expect(ring.has(a.kid)).toBe(false);
    expect(ring.get(b.kid)).toBeDefined();
  });

  it("add() accepts a JWK without kid, under the given kid", async () => {
    const a = await generateSigningKey();
    const ring = new KeyRing();
    const { kid: _kid, ...bare } = a.publicJwk;
    await ring.add("k1", bare);
    expect(publicJwks(ring).keys[0]?.kid).toBe("k1");
  });

  it.each<[string, (jwk: Record<string, unknown>) => unknown]>([
    ["private key material", (j) => ({ ...j, d: j.x })],
    ["another curve", (j) => ({ ...j, crv: "Ed448" })],
    ["an RSA key", () => ({ kty: "RSA", n: "AQAB", e: "AQAB" })],
    ["another alg", (j) => ({ ...j, alg: "ES256" })],
    ["an encryption key", (j) => ({ ...j, use: "enc" })],
    ["a short x", (j) => ({ ...j, x: "AAAA" })],
    ["a mismatched kid", (j) => ({ ...j, kid: "other" })],
    ["not an object", () => "jwk"],
  ])("refuses %s", async (_label, mutate) => {
    const a = await generateSigningKey();
    const ring = new KeyRing();
    await expect(ring.add(a.kid, mutate({ ...a.publicJwk }))).rejects.toMatchObject({ code: "jwk_invalid" });
    expect(ring.size).toBe(0);
  });

  it("refuses a JWKS entry without kid and duplicate kids", async () => {
    const a = await generateSigningKey();
    const { kid: _kid, ...bare } = a.publicJwk;
    await expect(KeyRing.from({ keys: [bare] })).rejects.toMatchObject({ code: "jwk_invalid" });
    await expect(KeyRing.from({ keys: [a.publicJwk, a.publicJwk] })).rejects.toMatchObject({
      code: "jwk_invalid",
    });
  });
});
