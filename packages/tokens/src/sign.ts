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

/** The claims every link of a batch shares: all but `sub` (the volunteer) and `jti` (the link). */
export type SharedLinkClaims = Omit<LinkClaims, "sub" | "jti">;

/** What varies per link of a batch. */
export interface LinkSubject {
  sub: string;
  jti: string;
}

/** Signatures in flight at once: keeps the crypto thread pool busy without a 10,000-promise burst. */
const SIGN_CONCURRENCY = 256;
const MAX_ID = 256;
const encoder = new TextEncoder();
const b64u = (text: string): string => Buffer.from(text, "utf8").toString("base64url");

/**
 * Signs one link per subject, all with `shared` claims: the same compact JWS, byte for byte, as
 * {@link signLink} gives for `{iss, aud, sub, jti, iat, nbf, exp, cmp, cst, phs, scp}` (Ed25519 is
 * deterministic), but the header is encoded once, the payload is spliced from pre-encoded JSON
 * around each subject's two strings, and WebCrypto signs directly with the non-extractable key
 * (jose rebuilds and re-checks the header and claims for every token: ~2× the cost).
 * The shared claims are checked once with the verifier's schema; each `sub`/`jti` by the same rule
 * as there (a string of 1 to 256 characters).
 */
export async function signLinks(
  key: SigningKey,
  shared: SharedLinkClaims,
  subjects: readonly LinkSubject[],
): Promise<string[]> {
  if (subjects.length === 0) return [];
  for (const s of subjects) {
    if (!isId(s.sub) || !isId(s.jti)) {
      throw new TokenKeyError(
        "claims_invalid",
        "link claims are invalid: sub and jti must be 1 to 256 characters",
      );
    }
  }
  const first = subjects[0]!;
  const check = tokenClaimsSchema.safeParse(toTokenPayload(orderedClaims(shared, first)));
  if (!check.success) {
    throw new TokenKeyError("claims_invalid", `link claims are invalid: ${check.error.issues[0]?.message}`);
  }
  const header = b64u(JSON.stringify({ alg: TOKEN_ALG, typ: TOKEN_TYP, kid: key.kid }));
  // `{"iss":…,"aud":…,"sub":` + sub + `,"jti":` + jti + `,"iat":…}`: JSON.stringify's own output.
  const prefix = `{"iss":${JSON.stringify(shared.iss)},"aud":${JSON.stringify(shared.aud)},"sub":`;
  const suffix = JSON.stringify({
    iat: shared.iat,
    nbf: shared.nbf,
    exp: shared.exp,
    cmp: shared.cmp,
    cst: shared.cst,
    phs: shared.phs,
    scp: shared.scp.join(" "),
  }).slice(1);
  const signOne = async (s: LinkSubject): Promise<string> => {
    const input = `${header}.${b64u(`${prefix}${JSON.stringify(s.sub)},"jti":${JSON.stringify(s.jti)},${suffix}`)}`;
    const signature = await crypto.subtle.sign("Ed25519", key.privateKey, encoder.encode(input));
    return `${input}.${Buffer.from(signature).toString("base64url")}`;
  };
  const out: string[] = [];
  for (let i = 0; i < subjects.length; i += SIGN_CONCURRENCY) {
    out.push(...(await Promise.all(subjects.slice(i, i + SIGN_CONCURRENCY).map(signOne))));
  }
  return out;
}

const isId = (v: unknown): v is string => typeof v === "string" && v.length >= 1 && v.length <= MAX_ID;

/** The claims in the order {@link signLinks} encodes them. */
const orderedClaims = (shared: SharedLinkClaims, s: LinkSubject): LinkClaims => ({
  iss: shared.iss,
  aud: shared.aud,
  sub: s.sub,
  jti: s.jti,
  iat: shared.iat,
  nbf: shared.nbf,
  exp: shared.exp,
  cmp: shared.cmp,
  cst: shared.cst,
  phs: shared.phs,
  scp: shared.scp,
});
