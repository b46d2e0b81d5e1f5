import fc from "fast-check";
import { base64url } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { toTokenPayload } from "./claims.ts";
import { MAX_TOKEN_LENGTH, TOKEN_ALG, TOKEN_TYP } from "./constants.ts";
import { b64json, claimsAt, setup, signRaw } from "./test-support.ts";
import type { VerifyResult } from "./verify.ts";

const REASONS = ["token_invalid", "expired", "not_yet_valid"];

let env: Awaited<ReturnType<typeof setup>>;
let valid: string;
beforeAll(async () => {
  env = await setup();
  valid = await env.sign();
});

/** Resolves, never rejects, and a refusal carries a reason from the closed set. */
async function verified(token: string): Promise<VerifyResult> {
  const result = await env.verifier.verify(token);
  if (!result.ok) expect(REASONS).toContain(result.reason);
  return result;
}

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const segment = fc.oneof(
  fc.uint8Array({ maxLength: 96 }).map((b) => base64url.encode(b)),
  fc.string({ unit: fc.constantFrom(...B64URL, "=", "+", "/", ".", " ", "%") }),
  fc.jsonValue().map(b64json),
);

const headerArb = fc.oneof(
  fc.jsonValue(),
  fc.record(
    {
      alg: fc.oneof(
        fc.constantFrom(TOKEN_ALG, "none", "None", "HS256", "RS256", "ES256", "eddsa", "Ed25519"),
        fc.jsonValue(),
      ),
      typ: fc.oneof(fc.constantFrom(TOKEN_TYP, "JWT", "PBL+JWT", "application/pbl+jwt", ""), fc.jsonValue()),
      kid: fc.oneof(fc.constant("__real__"), fc.string(), fc.jsonValue()),
      jwk: fc.jsonValue(),
      jku: fc.webUrl(),
      crit: fc.array(fc.string()),
      b64: fc.boolean(),
      zip: fc.constant("DEF"),
    },
    { requiredKeys: [] },
  ),
);

const payloadArb = fc.oneof(
  fc.jsonValue(),
  fc
    .dictionary(
      fc.constantFrom("iss", "aud", "sub", "jti", "iat", "nbf", "exp", "cmp", "cst", "phs", "scp", "x"),
      fc.jsonValue(),
    )
    .map((over) => ({ ...toTokenPayload(claimsAt()), ...over })),
);

const withRealKid = (h: unknown): unknown =>
  h !== null && typeof h === "object" && !Array.isArray(h) && (h as { kid?: unknown }).kid === "__real__"
    ? { ...h, kid: env.key.kid }
    : h;

describe("verify (property)", () => {
  it("resolves to a refusal from the closed set for arbitrary strings", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.string({ unit: "binary" }),
          fc.array(segment, { maxLength: 5 }).map((s) => s.join(".")),
          fc.integer({ min: MAX_TOKEN_LENGTH - 2, max: MAX_TOKEN_LENGTH + 2 }).map((n) => "a".repeat(n)),
        ),
        async (token) => {
          expect((await verified(token)).ok).toBe(false);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("refuses JWS-shaped tokens with any header and payload and a signature that is not the key's", async () => {
    await fc.assert(
      fc.asyncProperty(headerArb, payloadArb, segment, async (header, payload, sig) => {
        const token = `${b64json(withRealKid(header))}.${b64json(payload)}.${sig}`;
        expect((await verified(token)).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it("accepts a token signed by the key only with the pinned alg and no key-choosing header", async () => {
    await fc.assert(
      fc.asyncProperty(headerArb, payloadArb, async (header, payload) => {
        const h = withRealKid(header);
        const hObj = (h !== null && typeof h === "object" && !Array.isArray(h) ? h : {}) as Record<
          string,
          unknown
        >;
        const p = (
          payload !== null && typeof payload === "object" && !Array.isArray(payload) ? payload : {}
        ) as Record<string, unknown>;
        const token = await signRaw(hObj, p, env.key.privateKey);
        const result = await verified(token);
        if (result.ok) {
          expect(hObj.alg).toBe(TOKEN_ALG);
          expect(hObj.kid).toBe(env.key.kid);
          for (const name of ["jwk", "jku", "x5u", "x5c", "crit"])
            expect(Object.hasOwn(hObj, name)).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("never accepts a mutation of a valid token: a changed character, swapped segments, a truncation", async () => {
    expect((await verified(valid)).ok).toBe(true);
    const changed = fc.tuple(fc.nat(), fc.constantFrom(...B64URL, ".", "=", " ", "%")).map(([i, ch]) => {
      const at = i % valid.length;
      return valid.slice(0, at) + ch + valid.slice(at + 1);
    });
    const swapped = fc
      .tuple(fc.nat(2), fc.nat(2))
      .filter(([a, b]) => a !== b)
      .map(([a, b]) => {
        const parts = valid.split(".");
        [parts[a], parts[b]] = [parts[b]!, parts[a]!];
        return parts.join(".");
      });
    const truncated = fc.nat().map((n) => valid.slice(0, n % valid.length));
    const dropped = fc.nat().map((n) => {
      const at = n % valid.length;
      return valid.slice(0, at) + valid.slice(at + 1);
    });
    const extended = fc.string({ minLength: 1, maxLength: 4 }).map((s) => valid + s);
    await fc.assert(
      fc.asyncProperty(fc.oneof(changed, swapped, truncated, dropped, extended), async (token) => {
        fc.pre(token !== valid);
        expect((await verified(token)).ok).toBe(false);
      }),
      { numRuns: 1000 },
    );
    // Found by the property: the decoders skip whitespace and the spare low bits of the last
    // character, so these other spellings of the same signed bytes once verified.
    const last = B64URL.indexOf(valid.at(-1)!);
    for (const spelling of [`${valid} `, `${valid}\n`, valid.slice(0, -1) + B64URL[last ^ 1]]) {
      expect(await verified(spelling)).toEqual({ ok: false, reason: "token_invalid" });
    }
  });
});
