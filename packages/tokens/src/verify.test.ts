import { createHmac } from "node:crypto";
import { type CryptoKey, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { toTokenPayload } from "./claims.ts";
import { MAX_TOKEN_LENGTH, TOKEN_AUDIENCE } from "./constants.ts";
import { generateSigningKey } from "./keys.ts";
import { signLink } from "./sign.ts";
import { b64json, claimsAt, ISSUER, setup, signRaw, T0_SECONDS } from "./test-support.ts";
import { createVerifier } from "./verify.ts";

const encoder = new TextEncoder();
const flip = (s: string, i: number): string => s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);

describe("sign and verify", () => {
  it("round-trips every claim", async () => {
    const { verifier, sign } = await setup();
    const token = await sign();
    expect(await verifier.verify(token)).toEqual({ ok: true, claims: claimsAt() });
  });

  it("puts alg, typ and kid in the header and scopes space-separated", async () => {
    const { key, sign } = await setup();
    const [h, p] = (await sign()).split(".") as [string, string];
    expect(JSON.parse(Buffer.from(h, "base64url").toString())).toEqual({
      alg: "EdDSA",
      typ: "pbl+jwt",
      kid: key.kid,
    });
    expect(JSON.parse(Buffer.from(p, "base64url").toString()).scp).toBe("calls:read calls:write");
  });

  it.each([
    ["empty scopes", { scp: [] }],
    ["exp before nbf", { exp: T0_SECONDS - 1 }],
    ["wrong audience", { aud: "someone-else" }],
    ["fractional time", { iat: T0_SECONDS + 0.5 }],
  ])("refuses to sign a link that could never verify: %s", async (_label, over) => {
    const { key } = await setup();
    await expect(signLink(key, claimsAt(over))).rejects.toMatchObject({ code: "claims_invalid" });
  });
});

describe("verify refusals", () => {
  // Builds a token with any header and payload, signed by `key` (the ring's key unless told).
  // Signs with WebCrypto directly: jose would refuse to produce some of these headers.
  async function forge(
    ctx: Awaited<ReturnType<typeof setup>>,
    header: Record<string, unknown>,
    payload: Record<string, unknown> = toTokenPayload(claimsAt()),
    privateKey: CryptoKey = ctx.key.privateKey,
  ): Promise<string> {
    return signRaw({ alg: "EdDSA", ...header }, payload, privateKey);
  }

  type Case = [string, (ctx: Awaited<ReturnType<typeof setup>>) => Promise<string> | string];
  it.each<Case>([
    [
      "bad signature",
      async (c) => {
        const t = await c.sign();
        const dot = t.lastIndexOf(".");
        return flip(t, dot + 5);
      },
    ],
    [
      "tampered payload",
      async (c) => {
        const [h, , s] = (await c.sign()).split(".");
        return `${h}.${b64json(toTokenPayload(claimsAt({ scp: ["calls:read", "members:read"] })))}.${s}`;
      },
    ],
    [
      "alg none (unsecured)",
      () => `${b64json({ alg: "none", typ: "pbl+jwt" })}.${b64json(toTokenPayload(claimsAt()))}.`,
    ],
    [
      "alg none with the real kid",
      (c) =>
        `${b64json({ alg: "none", typ: "pbl+jwt", kid: c.key.kid })}.${b64json(toTokenPayload(claimsAt()))}.`,
    ],
    [
      "HS256 keyed with the public key bytes",
      async (c) => {
        const input = `${b64json({ alg: "HS256", typ: "pbl+jwt", kid: c.key.kid })}.${b64json(toTokenPayload(claimsAt()))}`;
        const secret = Buffer.from(c.key.publicJwk.x, "base64url");
        return `${input}.${createHmac("sha256", secret).digest("base64url")}`;
      },
    ],
    [
      "HS256 via jose, secret = public JWK",
      async (c) =>
        new SignJWT(toTokenPayload(claimsAt()))
          .setProtectedHeader({ alg: "HS256", typ: "pbl+jwt", kid: c.key.kid })
          .sign(encoder.encode(JSON.stringify(c.key.publicJwk))),
    ],
    ["wrong typ", (c) => forge(c, { typ: "JWT", kid: c.key.kid })],
    ["missing typ", (c) => forge(c, { kid: c.key.kid })],
    [
      "wrong iss",
      (c) =>
        forge(
          c,
          { typ: "pbl+jwt", kid: c.key.kid },
          toTokenPayload(claimsAt({ iss: "https://evil.example" })),
        ),
    ],
    [
      "wrong aud",
      (c) => forge(c, { typ: "pbl+jwt", kid: c.key.kid }, { ...toTokenPayload(claimsAt()), aud: "other" }),
    ],
    [
      "aud as an array",
      (c) =>
        forge(
          c,
          { typ: "pbl+jwt", kid: c.key.kid },
          { ...toTokenPayload(claimsAt()), aud: [TOKEN_AUDIENCE, "other"] },
        ),
    ],
    ["unknown kid", (c) => forge(c, { typ: "pbl+jwt", kid: "no-such-key" })],
    ["no kid", (c) => forge(c, { typ: "pbl+jwt" })],
    [
      "self-signed with another key under a real kid",
      async (c) => {
        const other = await generateSigningKey();
        return forge(c, { typ: "pbl+jwt", kid: c.key.kid }, undefined, other.privateKey);
      },
    ],
    [
      "embedded jwk header (attacker's key)",
      async (c) => {
        const other = await generateSigningKey();
        return forge(
          c,
          { typ: "pbl+jwt", kid: c.key.kid, jwk: other.publicJwk },
          undefined,
          other.privateKey,
        );
      },
    ],
    [
      "embedded jwk header, even signed by the real key",
      (c) => forge(c, { typ: "pbl+jwt", kid: c.key.kid, jwk: c.key.publicJwk }),
    ],
    ["jku header", (c) => forge(c, { typ: "pbl+jwt", kid: c.key.kid, jku: "https://evil.example/jwks" })],
    ["x5u header", (c) => forge(c, { typ: "pbl+jwt", kid: c.key.kid, x5u: "https://evil.example/cert" })],
    ["x5c header", (c) => forge(c, { typ: "pbl+jwt", kid: c.key.kid, x5c: ["MIIB"] })],
    ["crit header naming a claim", (c) => forge(c, { typ: "pbl+jwt", kid: c.key.kid, crit: ["exp"] })],
    [
      "crit header naming an extension",
      (c) => forge(c, { typ: "pbl+jwt", kid: c.key.kid, crit: ["ext"], ext: 1 }),
    ],
    [
      "unencoded payload (b64: false)",
      (c) => forge(c, { typ: "pbl+jwt", kid: c.key.kid, crit: ["b64"], b64: false }),
    ],
    [
      "unknown scope",
      (c) =>
        forge(
          c,
          { typ: "pbl+jwt", kid: c.key.kid },
          { ...toTokenPayload(claimsAt()), scp: "calls:read admin" },
        ),
    ],
    [
      "empty scope string",
      (c) => forge(c, { typ: "pbl+jwt", kid: c.key.kid }, { ...toTokenPayload(claimsAt()), scp: "" }),
    ],
    [
      "scopes as an array",
      (c) =>
        forge(c, { typ: "pbl+jwt", kid: c.key.kid }, { ...toTokenPayload(claimsAt()), scp: ["calls:read"] }),
    ],
    ...(["iss", "aud", "sub", "jti", "iat", "nbf", "exp", "cmp", "cst", "phs", "scp"] as const).map(
      (claim): Case => [
        `missing ${claim}`,
        (c) => {
          const { [claim]: _dropped, ...rest } = toTokenPayload(claimsAt());
          return forge(c, { typ: "pbl+jwt", kid: c.key.kid }, rest);
        },
      ],
    ),
    [
      "string exp",
      (c) =>
        forge(c, { typ: "pbl+jwt", kid: c.key.kid }, { ...toTokenPayload(claimsAt()), exp: "9999999999" }),
    ],
    [
      "oversized token",
      async (c) => {
        const t = await c.sign({ sub: "v".repeat(200) });
        return t + "A".repeat(MAX_TOKEN_LENGTH - t.length + 1);
      },
    ],
    ["empty string", () => ""],
    ["two parts", async (c) => (await c.sign()).split(".").slice(0, 2).join(".")],
    ["four parts", async (c) => `${await c.sign()}.AAAA`],
    ["garbage base64", () => "!!!.@@@.###"],
    ["base64 of non-JSON", () => `${Buffer.from("hello").toString("base64url")}.e30.AAAA`],
    ["header is a JSON array", () => `${b64json([1])}.${b64json({})}.AAAA`],
    ["just dots", () => ".."],
    ["unicode", () => "ü.ü.ü"],
  ])("%s -> token_invalid", async (_label, make) => {
    const ctx = await setup();
    const token = await make(ctx);
    expect(await ctx.verifier.verify(token)).toEqual({ ok: false, reason: "token_invalid" });
  });

  it("refuses an oversized token before parsing it", async () => {
    const { verifier } = await setup();
    // Not even a JWS: had it been parsed, this would still be token_invalid, but cheaply.
    expect(await verifier.verify("a".repeat(MAX_TOKEN_LENGTH + 1))).toEqual({
      ok: false,
      reason: "token_invalid",
    });
  });

  it("draws the size line at 4 KiB for correctly signed tokens", async () => {
    const ctx = await setup();
    const padded = (n: number) =>
      forge(ctx, { typ: "pbl+jwt", kid: ctx.key.kid }, { ...toTokenPayload(claimsAt()), pad: "p".repeat(n) });
    const byLength = new Map<number, string>();
    const base = (await padded(0)).length;
    const guess = Math.floor(((MAX_TOKEN_LENGTH - base) * 3) / 4);
    for (let n = guess - 4; n < guess + 4; n++) {
      const t = await padded(n);
      byLength.set(t.length, t);
    }
    const fits = byLength.get(MAX_TOKEN_LENGTH) ?? byLength.get(MAX_TOKEN_LENGTH - 1);
    const over = byLength.get(MAX_TOKEN_LENGTH + 1) ?? byLength.get(MAX_TOKEN_LENGTH + 2);
    expect(fits && over).toBeTruthy();
    expect((await ctx.verifier.verify(fits!)).ok).toBe(true);
    expect(await ctx.verifier.verify(over!)).toEqual({ ok: false, reason: "token_invalid" });
  });
});

describe("time", () => {
  it.each([
    ["one second before exp", 3599, "ok"],
    ["exactly at exp", 3600, "expired"],
    ["after exp", 7200, "expired"],
  ])("%s -> %s", async (_label, advanceSeconds, want) => {
    const { verifier, clock, sign } = await setup();
    const token = await sign();
    clock.advance(advanceSeconds * 1000);
    const r = await verifier.verify(token);
    expect(r.ok ? "ok" : r.reason).toBe(want);
  });

  it.each([
    ["one second before nbf", -1, "not_yet_valid"],
    ["half a second before nbf", -0.5, "not_yet_valid"],
    ["exactly at nbf", 0, "ok"],
  ])("%s -> %s", async (_label, offsetSeconds, want) => {
    const { verifier, clock, sign } = await setup();
    const token = await sign({ iat: T0_SECONDS - 3600, nbf: T0_SECONDS + 60, exp: T0_SECONDS + 3600 });
    clock.advance((60 + offsetSeconds) * 1000);
    const r = await verifier.verify(token);
    expect(r.ok ? "ok" : r.reason).toBe(want);
  });

  it("expired and not-yet-valid refusals carry the verified claims", async () => {
    const { verifier, clock, sign } = await setup();
    const early = await sign({ nbf: T0_SECONDS + 60 });
    expect(await verifier.verify(early)).toEqual({
      ok: false,
      reason: "not_yet_valid",
      claims: claimsAt({ nbf: T0_SECONDS + 60 }),
    });
    clock.advance(3600_000);
    expect(await verifier.verify(await sign())).toMatchObject({
      reason: "expired",
      claims: { jti: "lnk_abc" },
    });
  });

  it("a bad signature on an expired token is token_invalid, not expired", async () => {
    const { verifier, clock, sign } = await setup();
    const t = await sign();
    clock.advance(10 * 3600_000);
    expect(await verifier.verify(flip(t, t.lastIndexOf(".") + 5))).toEqual({
      ok: false,
      reason: "token_invalid",
    });
  });

  it("a bad signature on a not-yet-valid token is token_invalid", async () => {
    const { verifier, sign } = await setup();
    const t = await sign({ nbf: T0_SECONDS + 60 });
    expect(await verifier.verify(flip(t, t.lastIndexOf(".") + 5))).toEqual({
      ok: false,
      reason: "token_invalid",
    });
  });

  it("a wrong issuer on an expired token is token_invalid", async () => {
    const { key, ring, clock } = await setup();
    const t = await signLink(key, claimsAt({ iss: "https://other.example" }));
    clock.advance(10 * 3600_000);
    const r = await createVerifier({ keys: ring, issuer: ISSUER, clock }).verify(t);
    expect(r).toEqual({ ok: false, reason: "token_invalid" });
  });
});

describe("key rotation", () => {
  it("a token signed by A still verifies once B is added; new tokens carry B's kid", async () => {
    const { key: a, ring, verifier, sign } = await setup();
    const oldToken = await sign();
    const b = await generateSigningKey();
    await ring.set({ keys: [a.publicJwk, b.publicJwk] });
    const newToken = await signLink(b, claimsAt({ jti: "lnk_new" }));

    expect(await verifier.verify(oldToken)).toMatchObject({ ok: true, claims: { jti: "lnk_abc" } });
    expect(await verifier.verify(newToken)).toMatchObject({ ok: true, claims: { jti: "lnk_new" } });
    const kidOf = (t: string) => JSON.parse(Buffer.from(t.split(".")[0]!, "base64url").toString()).kid;
    expect(kidOf(oldToken)).toBe(a.kid);
    expect(kidOf(newToken)).toBe(b.kid);
    expect(a.kid).not.toBe(b.kid);
  });

  it("once A is dropped from the ring its tokens are token_invalid", async () => {
    const { ring, verifier, sign } = await setup();
    const token = await sign();
    const b = await generateSigningKey();
    await ring.set({ keys: [b.publicJwk] });
    expect(await verifier.verify(token)).toEqual({ ok: false, reason: "token_invalid" });
  });
});
