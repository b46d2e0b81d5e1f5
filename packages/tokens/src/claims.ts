import { isScope, type Scope } from "@phaselock/core";
import type { LinkClaims } from "@phaselock/policy";
import { z } from "zod";
import { TOKEN_AUDIENCE } from "./constants.ts";

const id = z.string().min(1).max(256);
const numericDate = z.number().int().nonnegative();

const scopes = z.string().transform((value, ctx): Scope[] => {
  const parts = value.split(" ");
  if (!parts.every(isScope)) {
    ctx.addIssue({ code: "custom", message: "unknown or malformed scope" });
    return z.NEVER;
  }
  return [...new Set(parts)];
});

/**
 * The claims set of a link token as it travels (`scp` space-separated), parsed into
 * {@link LinkClaims}. Used both before signing and after verifying, so a token we sign is always
 * one we accept.
 */
export const tokenClaimsSchema = z
  .object({
    iss: z.string().min(1),
    aud: z.literal(TOKEN_AUDIENCE),
    sub: id,
    jti: id,
    iat: numericDate,
    nbf: numericDate,
    exp: numericDate,
    cmp: id,
    cst: id,
    phs: id,
    scp: scopes,
  })
  .refine((c) => c.iat <= c.nbf && c.nbf < c.exp, { message: "expected iat <= nbf < exp" });

/** The JWT payload for `claims`, scopes joined as the contract's space-separated string. */
export const toTokenPayload = (claims: LinkClaims): Record<string, unknown> => ({
  ...claims,
  scp: claims.scp.join(" "),
});

/** Verified payload → claims, or undefined when any claim is missing or malformed. No signature check. */
export const parseTokenClaims = (payload: unknown): LinkClaims | undefined => {
  const r = tokenClaimsSchema.safeParse(payload);
  return r.success ? r.data : undefined;
};
