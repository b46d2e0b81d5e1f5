import { type Clock, epochSeconds, sha256Hex } from "@phaselock/core";
import type { LinkClaims } from "@phaselock/policy";
import { base64url, type CompactJWSHeaderParameters, type CryptoKey, errors, jwtVerify } from "jose";
import { parseTokenClaims } from "./claims.ts";
import { MAX_TOKEN_LENGTH, TOKEN_ALG, TOKEN_AUDIENCE, TOKEN_TYP } from "./constants.ts";
import type { KeyRing } from "./keys.ts";
import type { VerifyCache } from "./verify-cache.ts";

/** Why a token was refused, as the gateway answers it. */
export type TokenRefusal = "token_invalid" | "expired" | "not_yet_valid";

/**
 * The outcome of {@link Verifier.verify}. `expired` and `not_yet_valid` carry the claims (their
 * signature was good) so a refusal page can say which link and when.
 */
export type VerifyResult =
  | { ok: true; claims: LinkClaims }
  | { ok: false; reason: "token_invalid" }
  | { ok: false; reason: "expired" | "not_yet_valid"; claims: LinkClaims };

export interface Verifier {
  verify(token: string): Promise<VerifyResult>;
}

export interface VerifierOptions {
  keys: KeyRing;
  /** The token service URL the tokens must name as `iss`. */
  issuer: string;
  clock: Clock;
  cache?: VerifyCache | undefined;
}

// Header parameters that would let a token pick its own key or demand unknown processing.
const FORBIDDEN_HEADERS = ["jwk", "jku", "x5u", "x5c", "crit"] as const;

/** Thrown from the key lookup; carries no token material. */
class KeyRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KeyRefused";
  }
}

// jose checks nbf/exp against `currentDate` *before* we parse the claims, and nbf before exp; the
// contract wants malformed → exp → nbf. So jose is given a tolerance that disables its time checks
// and {@link checkTime} applies them, the same way for fresh and cached tokens.
const NO_TIME_CHECK = Number.MAX_SAFE_INTEGER;

const INVALID = { ok: false, reason: "token_invalid" } as const;

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * A compact JWS in the one spelling its bytes have. The base64 decoders jose uses skip whitespace
 * and ignore the spare low bits of the last character, so without this one signed token has many
 * spellings (`<token> `, a changed last character) that all verify: each would be a distinct
 * token to anything keyed by the token's text.
 */
function isCanonical(token: string): boolean {
  if (!COMPACT_JWS.test(token)) return false;
  try {
    return token.split(".").every((part) => base64url.encode(base64url.decode(part)) === part);
  } catch {
    // A length no base64 has (4n + 1 characters).
    return false;
  }
}

/**
 * The one place a failure from jose (or from our key lookup) becomes a refusal. Anything else is
 * a bug and is rethrown.
 */
function refusalFor(err: unknown): TokenRefusal {
  if (err instanceof KeyRefused) return "token_invalid";
  if (err instanceof errors.JOSEError) {
    if (err.code === "ERR_JWT_EXPIRED") return "expired";
    if (err instanceof errors.JWTClaimValidationFailed && err.claim === "nbf") return "not_yet_valid";
    return "token_invalid";
  }
  throw err;
}

function checkTime(claims: LinkClaims, nowSeconds: number): VerifyResult {
  if (claims.exp <= nowSeconds) return { ok: false, reason: "expired", claims };
  if (claims.nbf > nowSeconds) return { ok: false, reason: "not_yet_valid", claims };
  return { ok: true, claims };
}

/**
 * A link-token verifier pinned to EdDSA, `typ: pbl+jwt`, the given issuer and the gateway
 * audience, taking keys only from `keys` by `kid`. Checks in contract order: well-formed,
 * signature/alg/typ/iss/aud/kid, then `exp`, then `nbf`.
 */
export function createVerifier(opts: VerifierOptions): Verifier {
  const { keys, issuer, clock, cache } = opts;
  if (!issuer) throw new TypeError("createVerifier needs an issuer");

  const keyFor = (header: CompactJWSHeaderParameters): CryptoKey => {
    for (const name of FORBIDDEN_HEADERS) {
      if (Object.hasOwn(header, name)) throw new KeyRefused(`"${name}" header is not accepted`);
    }
    const key = typeof header.kid === "string" ? keys.get(header.kid) : undefined;
    if (!key) throw new KeyRefused("unknown kid");
    return key;
  };

  async function verifySignature(token: string, now: Date): Promise<VerifyResult & { kid?: string }> {
    try {
      const { payload, protectedHeader } = await jwtVerify(token, keyFor, {
        algorithms: [TOKEN_ALG],
        typ: TOKEN_TYP,
        issuer,
        audience: TOKEN_AUDIENCE,
        currentDate: now,
        clockTolerance: NO_TIME_CHECK,
      });
      const claims = parseTokenClaims(payload);
      if (!claims) return INVALID;
      // Cached claims are shared between requests, so no caller may change them.
      Object.freeze(claims.scp);
      return { ok: true, claims: Object.freeze(claims), kid: protectedHeader.kid! };
    } catch (err) {
      const reason = refusalFor(err);
      if (reason === "token_invalid") return INVALID;
      // Unreachable while jose's time checks are disabled; kept so a jose change fails closed.
      const claims = parseTokenClaims((err as errors.JWTExpired).payload);
      return claims ? { ok: false, reason, claims } : INVALID;
    }
  }

  return {
    async verify(token: string): Promise<VerifyResult> {
      if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_LENGTH) return INVALID;
      const now = clock.now();
      const nowSeconds = epochSeconds(now);
      // The cache first: only a canonical token is ever cached, and an entry is keyed by the
      // SHA-256 of the exact text, so a hit is that same canonical text (no second spelling of
      // it can hit). The canonical check (a base64 round trip per part) was most of a hit's cost.
      const cacheKey = cache ? sha256Hex(token) : "";
      const hit = cache?.get(cacheKey, nowSeconds);
      if (hit && keys.has(hit.kid)) return checkTime(hit.claims, nowSeconds);
      if (!isCanonical(token)) return INVALID;

      const result = await verifySignature(token, now);
      if (!result.ok) return result;
      const { claims, kid } = result;
      if (cache && kid !== undefined && claims.exp > nowSeconds) cache.set(cacheKey, { claims, kid });
      return checkTime(claims, nowSeconds);
    },
  };
}
