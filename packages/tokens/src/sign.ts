import type { LinkClaims } from "@phaselock/policy";
import { SignJWT } from "jose";
import { tokenClaimsSchema, toTokenPayload } from "./claims.ts";
import { TOKEN_ALG, TOKEN_TYP } from "./constants.ts";
import { TokenKeyError } from "./errors.ts";
import type { SigningKey } from "./keys.ts";

/**
 * Signs a link token: compact JWS, header `{ alg: "EdDSA", typ: "pbl+jwt", kid }`. Claims are
 * checked against the same schema the verifier applies, so a link that could never verify is a
 * thrown bug here rather than a refusal later.
 */
export async function signLink(key: SigningKey, claims: LinkClaims): Promise<string> {
  const payload = toTokenPayload(claims);
  const check = tokenClaimsSchema.safeParse(payload);
  if (!check.success) {
    throw new TokenKeyError("claims_invalid", `link claims are invalid: ${check.error.issues[0]?.message}`);
  }
  return new SignJWT(payload)
    .setProtectedHeader({ alg: TOKEN_ALG, typ: TOKEN_TYP, kid: key.kid })
    .sign(key.privateKey);
}
