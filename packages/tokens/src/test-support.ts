import { FakeClock } from "@phaselock/core";
import type { LinkClaims } from "@phaselock/policy";
import { base64url, type CryptoKey } from "jose";
import { TOKEN_AUDIENCE } from "./constants.ts";
import { type GeneratedSigningKey, generateSigningKey, KeyRing } from "./keys.ts";
import { signLink } from "./sign.ts";
import { createVerifier } from "./verify.ts";
import type { VerifyCache } from "./verify-cache.ts";

export const ISSUER = "http://127.0.0.1:4000";
export const T0 = new Date("2020-03-01T12:00:00Z");
export const T0_SECONDS = T0.getTime() / 1000;

/** Claims valid from T0 for one hour. */
export const claimsAt = (over: Partial<LinkClaims> = {}): LinkClaims => ({
  iss: ISSUER,
  aud: TOKEN_AUDIENCE,
  sub: "vol-42",
  jti: "lnk_abc",
  iat: T0_SECONDS,
  nbf: T0_SECONDS,
  exp: T0_SECONDS + 3600,
  cmp: "starmer-2020",
  cst: "leadership-2020",
  phs: "ballot",
  scp: ["calls:read", "calls:write"],
  ...over,
});

export const b64json = (value: unknown): string => base64url.encode(JSON.stringify(value));

/** A compact JWS over any header and payload, signed with Ed25519 without jose's header checks. */
export async function signRaw(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  privateKey: CryptoKey,
): Promise<string> {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = await crypto.subtle.sign("Ed25519", privateKey, new TextEncoder().encode(input));
  return `${input}.${base64url.encode(new Uint8Array(sig))}`;
}

export async function setup(opts: { cache?: VerifyCache } = {}) {
  const key: GeneratedSigningKey = await generateSigningKey();
  const ring = new KeyRing();
  await ring.add(key.kid, key.publicJwk);
  const clock = new FakeClock(T0);
  const verifier = createVerifier({ keys: ring, issuer: ISSUER, clock, cache: opts.cache });
  const sign = (over: Partial<LinkClaims> = {}) => signLink(key, claimsAt(over));
  return { key, ring, clock, verifier, sign };
}
