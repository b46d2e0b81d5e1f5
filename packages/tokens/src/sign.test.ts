import fc from "fast-check";
import { decodeProtectedHeader, importJWK, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { type LinkSubject, type SharedLinkClaims, signLink, signLinks } from "./sign.ts";
import { claimsAt, ISSUER, setup, T0_SECONDS } from "./test-support.ts";

const { sub: _sub, jti: _jti, ...SHARED } = claimsAt();
const shared: SharedLinkClaims = SHARED;
const subjects: LinkSubject[] = [
  { sub: "vol-1", jti: "lnk_1" },
  { sub: 'Zoë "the closer" \\ Ōsaka 👋', jti: "lnk_2" },
  { sub: "x".repeat(256), jti: "lnk_3" },
];

describe("signLinks (the batch signer)", () => {
  it("gives byte for byte the compact JWS that signLink (jose) gives", async () => {
    const { key } = await setup();
    const batch = await signLinks(key, shared, subjects);
    const one = await Promise.all(subjects.map((s) => signLink(key, { ...claimsAt(), ...s })));
    expect(batch).toEqual(one);
  });

  it("is byte-identical to signLink for any subject strings (property)", async () => {
    const { key } = await setup();
    const id = fc.string({ minLength: 1, maxLength: 256, unit: "grapheme" }).filter((s) => s.length <= 256);
    await fc.assert(
      fc.asyncProperty(id, id, fc.integer({ min: 1, max: 90 * 86_400 }), async (sub, jti, ttl) => {
        const claims = { ...shared, exp: T0_SECONDS + ttl };
        const [batch] = await signLinks(key, claims, [{ sub, jti }]);
        expect(batch).toBe(await signLink(key, { ...claimsAt(), exp: claims.exp, sub, jti }));
      }),
      { numRuns: 100 },
    );
  });

  it("signs tokens jose verifies and the verifier accepts, beyond one concurrency chunk", async () => {
    const { key, verifier } = await setup();
    const many = Array.from({ length: 600 }, (_, i) => ({ sub: `vol-${i}`, jti: `lnk_${i}` }));
    const tokens = await signLinks(key, shared, many);
    expect(tokens).toHaveLength(600);
    const publicKey = await importJWK(key.publicJwk, "EdDSA");
    for (const i of [0, 255, 256, 599]) {
      const token = tokens[i]!;
      expect(decodeProtectedHeader(token)).toEqual({ alg: "EdDSA", typ: "pbl+jwt", kid: key.kid });
      const { payload } = await jwtVerify(token, publicKey, {
        issuer: ISSUER,
        audience: "phaselock-gateway",
        typ: "pbl+jwt",
        algorithms: ["EdDSA"],
        currentDate: new Date(T0_SECONDS * 1000),
      });
      expect(payload).toMatchObject({ sub: `vol-${i}`, jti: `lnk_${i}`, scp: "calls:read calls:write" });
      expect(await verifier.verify(token)).toEqual({ ok: true, claims: { ...claimsAt(), ...many[i] } });
    }
  });

  it.each([
    ["empty sub", [{ sub: "", jti: "lnk_1" }]],
    ["overlong jti", [{ sub: "v", jti: "j".repeat(257) }]],
    ["a bad subject after good ones", [...subjects, { sub: "v", jti: "" }]],
  ])("refuses a subject that could never verify: %s", async (_label, bad) => {
    const { key } = await setup();
    await expect(signLinks(key, shared, bad)).rejects.toMatchObject({ code: "claims_invalid" });
  });

  it.each([
    ["empty scopes", { scp: [] }],
    ["exp before nbf", { exp: T0_SECONDS - 1 }],
    ["wrong audience", { aud: "someone-else" }],
    ["fractional time", { iat: T0_SECONDS + 0.5 }],
  ])("refuses shared claims that could never verify: %s", async (_label, over) => {
    const { key } = await setup();
    const bad = { ...shared, ...over } as SharedLinkClaims;
    await expect(signLinks(key, bad, subjects)).rejects.toMatchObject({ code: "claims_invalid" });
  });

  it("signs nothing for no subjects", async () => {
    const { key } = await setup();
    expect(await signLinks(key, shared, [])).toEqual([]);
  });
});
