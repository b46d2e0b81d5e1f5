import type { Scope } from "@phaselock/core";
import {
  type Campaign,
  type Contest,
  decideAccess,
  type LinkClaims,
  type Phase,
  type PolicySnapshot,
  phaseEndedAt,
  phaseStartsLater,
} from "@phaselock/policy";
import type { GatewayDeps, LinkRecord, SessionRecord } from "./deps.ts";
import { type Refusal, type RefusalContext, refusal } from "./refusals.ts";
import {
  claimsOfLink,
  credentialHash,
  isSessionCredential,
  LINK_CODE,
  looksLikeLink,
  sessionLive,
} from "./sessions.ts";

export type CheckDeps = Pick<
  GatewayDeps,
  "clock" | "policy" | "verifier" | "audit" | "limits" | "seen" | "links" | "sessions" | "keyKnown"
>;

export interface CheckRequest {
  /** the session cookie or bearer token as sent (`""` for a malformed `Authorization`) */
  credential: string | undefined;
  /**
   * `session` on `/pb/*`: only a session opens member data, a link there is `session_required`.
   * `link` (the default) on the landing page and redemption: a signed link or a short link code.
   */
  via?: "session" | "link" | undefined;
  /**
   * The scope the upstream route needs; `null` for an unmapped route or a malformed path (refused
   * `scope_denied`). Absent for the landing page and redemption: no route, no scope to check.
   */
  scope?: Scope | null | undefined;
  /**
   * Meters an upstream request (audit writable, rate limits, record quota); `assignsRecord`: the
   * route hands out a new member record; `crossSite`: a cookie-borne request from another site or
   * a sibling origin, refused `cross_site` once the link's own checks pass, before it is seen or
   * spends a rate token (another site's page must not use up a volunteer's limits). The landing
   * page and redemption are not metered.
   */
  meter?: { assignsRecord: boolean; crossSite?: boolean } | undefined;
}

export interface Admitted {
  ok: true;
  claims: LinkClaims;
  /** the session the request came with (`via: "session"`) */
  session?: SessionRecord | undefined;
  phase: Phase;
  campaign: Campaign | undefined;
  contest: Contest;
}

export interface Refused {
  ok: false;
  refusal: Refusal;
  claims?: LinkClaims | undefined;
  /** whether the refusal goes in the audit trail: not when the trail itself cannot be written */
  audit: boolean;
}

export type CheckOutcome = Admitted | Refused;

const refused = (r: Refusal, claims?: LinkClaims): Refused => ({
  ok: false,
  refusal: r,
  claims,
  audit: true,
});

/**
 * Every request, checked again in the contract's order; the first failure answers:
 *  1. a credential is present — `token_missing`; on `/pb/*` a session, not a link —
 *     `session_required`; an unknown or ended session, or one whose link's key is no longer
 *     known — `token_invalid` (then the link's `exp` and `nbf`, then the session's own expiry);
 *  2. signature, `alg`, `typ`, `iss`, `aud`, `kid` — `token_invalid`; 3. `exp`, then `nbf`;
 *  4. the policy state is confirmed current — else `unavailable` (fail closed);
 *  5. revocation; 6. the link's phase is current; 7. the route's scope; 8. the entitlement;
 *     then ours, beyond the contract: automatic suspension (all four in `decideAccess`);
 *  and for an upstream route only: the audit trail is writable (else `unavailable`, unrecorded);
 *  ours again: a cookie-borne request from another site (`cross_site`, see {@link CheckRequest});
 *  9. rate limits per link and campaign; 10. record quota — here for a route that hands out a new
 *     record (the upstream is not even asked), and on the answer by `admitAnswer`.
 * A store failure while metering answers `unavailable`; other failures throw (callers fail closed).
 */
export async function checkRequest(deps: CheckDeps, req: CheckRequest): Promise<CheckOutcome> {
  if (!req.credential) return refused(refusal("token_missing"));
  const verified =
    req.via === "session"
      ? await resolveSession(deps, req.credential)
      : await verifyCredential(deps, req.credential);
  if (!verified.ok) return verified;
  const { claims, session } = verified;
  const now = deps.clock.now();
  if (!deps.policy.isFresh(now)) return refused(refusal("unavailable"), claims);
  const snapshot = deps.policy.snapshot();
  const decided = decidePolicy(deps, snapshot, claims, req.scope, now);
  if (!decided.ok) return decided;
  const access: Admitted = session ? { ...decided, session } : decided;
  if (req.meter === undefined) return access;

  if (!deps.audit.healthy(now)) return { ok: false, refusal: refusal("unavailable"), claims, audit: false };
  if (req.meter.crossSite) return refused(refusal("cross_site"), claims);
  deps.seen(claims.jti, now);
  const limited = await meter(deps, access, req.meter.assignsRecord, now);
  if (limited) return refused(namingWhomToAsk(limited, claims, snapshot, now), claims);
  return access;
}

/** A limit's refusal with the link's context, so its page still names the campaign and whom to ask. */
const namingWhomToAsk = (r: Refusal, claims: LinkClaims, snapshot: PolicySnapshot, now: Date): Refusal => ({
  ...r,
  context: { ...context(claims, snapshot, now), ...r.context },
});

/** Step 10 on the upstream's answer: whether the link may see member record `recordId`. */
export async function admitAnswer(
  deps: Pick<GatewayDeps, "limits" | "policy">,
  admitted: Admitted,
  recordId: string,
  now: Date,
): Promise<Refusal | null> {
  let spent: Refusal | null;
  try {
    spent = await deps.limits.admitRecord(admitted.claims, admitted.campaign, recordId, now);
  } catch {
    return refusal("unavailable");
  }
  return spent && namingWhomToAsk(spent, admitted.claims, deps.policy.snapshot(), now);
}

type Verified = { ok: true; claims: LinkClaims; session?: SessionRecord | undefined } | Refused;

/** Steps 2–3: the token's signature and header (or the short link's row), then its validity period. */
async function verifyCredential(deps: CheckDeps, token: string): Promise<Verified> {
  if (LINK_CODE.test(token)) {
    const link = await deps.links.getByCodeHash(credentialHash(token));
    if (!link) return refused(refusal("token_invalid"));
    return storedLink(deps, link);
  }
  const verified = await deps.verifier.verify(token);
  // A known key's signature is not enough: the link was issued under one key, and a token of it
  // signed by another (a stolen key) must not open a session that outlives that key's revocation.
  if (verified.claims && !(await signedByItsKey(deps, token, verified.claims.jti)))
    return refused(refusal("token_invalid"), verified.claims);
  if (verified.ok) return verified;
  const ctx =
    verified.reason === "token_invalid"
      ? {}
      : context(verified.claims, deps.policy.snapshot(), deps.clock.now());
  return refused(refusal(verified.reason, ctx), verified.claims);
}

/** Whether a verified token's `kid` is its stored link's (an unknown link is refused later). */
async function signedByItsKey(deps: CheckDeps, token: string, linkId: string): Promise<boolean> {
  const link = await deps.links.get(linkId);
  return link === null || link.kid === headerKid(token);
}

function headerKid(token: string): unknown {
  try {
    const header = Buffer.from(token.slice(0, token.indexOf(".")), "base64url").toString("utf8");
    return (JSON.parse(header) as { kid?: unknown } | null)?.kid;
  } catch {
    return undefined;
  }
}

/** A link read from the database, checked as its token would be: key still known, `exp`, `nbf`. */
function storedLink(deps: CheckDeps, link: LinkRecord): Verified {
  const claims = claimsOfLink(link);
  if (!deps.keyKnown(link.kid)) return refused(refusal("token_invalid"), claims);
  const at = deps.clock.now();
  const now = Math.floor(at.getTime() / 1000);
  if (claims.exp <= now)
    return refused(refusal("expired", context(claims, deps.policy.snapshot(), at)), claims);
  if (claims.nbf > now)
    return refused(refusal("not_yet_valid", context(claims, deps.policy.snapshot(), at)), claims);
  return { ok: true, claims };
}

/**
 * `/pb/*`: a session credential, never a link (a link there has skipped its counted redemption),
 * resolved to its session and link; then the link is checked as a token would be.
 */
async function resolveSession(deps: CheckDeps, credential: string): Promise<Verified> {
  if (!isSessionCredential(credential))
    return refused(refusal(looksLikeLink(credential) ? "session_required" : "token_invalid"));
  const resolved = await deps.sessions.resolve(credentialHash(credential));
  if (!resolved) return refused(refusal("token_invalid"));
  // An ended session is still a known link's (read from Postgres, not from what was sent): its
  // refusal names that link, so the audit shows who goes on using it after it was signed out (a
  // forwarded cookie, a replayed bearer) rather than an anonymous denial folded per client.
  if (resolved.session.endedAt !== null)
    return refused(refusal("token_invalid"), claimsOfLink(resolved.link));
  const link = storedLink(deps, resolved.link);
  if (!link.ok) return link;
  // Capped at the link's exp, so past the link's own exp the answer above is `expired`.
  const now = deps.clock.now();
  if (!sessionLive(resolved.session, now)) {
    // It was real and ran out (SESSION_TTL_SECONDS): say so, and whom to ask, not "not valid".
    const ctx = { ...context(link.claims, deps.policy.snapshot(), now), sessionTimedOut: true };
    return refused(refusal("token_invalid", ctx), link.claims);
  }
  return { ok: true, claims: link.claims, session: resolved.session };
}

/** Steps 5–8: revocation, current phase, route scope, entitlement (the policy package's rule). */
function decidePolicy(
  deps: CheckDeps,
  snapshot: PolicySnapshot,
  claims: LinkClaims,
  requiredScope: Scope | null | undefined,
  now: Date,
): Admitted | Refused {
  const decision = decideAccess({
    snapshot,
    revocations: deps.policy.revocations(),
    claims,
    requiredScope,
    now,
  });
  if (!decision.allowed) return refused(refusal(decision.reason, context(claims, snapshot, now)), claims);
  return {
    ok: true,
    claims,
    phase: decision.phase,
    contest: snapshot.contests.get(claims.cst)!,
    campaign: snapshot.campaigns.get(claims.cmp),
  };
}

/**
 * Step 9 for a redemption (`POST /l/:token`), a request of its link like any other: the link's and
 * its campaign's rate limits, before it writes anything. Unlimited, anyone holding a link (a spent
 * one too) could re-open it from one device as fast as they liked, each time a new credential, a
 * session write and a policy change that makes every gateway re-read every cached session.
 */
export async function meterRedemption(deps: CheckDeps, a: Admitted, now: Date): Promise<Refusal | null> {
  const limited = await meter(deps, a, false, now);
  return limited && namingWhomToAsk(limited, a.claims, deps.policy.snapshot(), now);
}

/** Steps 9–10 before the upstream: a store that cannot count refuses rather than let traffic through. */
async function meter(
  deps: CheckDeps,
  a: Admitted,
  assignsRecord: boolean,
  now: Date,
): Promise<Refusal | null> {
  try {
    // One store call: the rate limits and, for a route that hands out a record, the quota read.
    return await deps.limits.request(a.claims, a.campaign, now, { recordsLeft: assignsRecord });
  } catch {
    return refusal("unavailable");
  }
}

/**
 * What the gateway knows about a refused link at `now`, to explain it in plain words. `endedAt`
 * is when its phase stopped taking it (a closure, else a past end), never a time still to come.
 */
export function context(
  claims: LinkClaims | undefined,
  snapshot: PolicySnapshot | undefined,
  now: Date,
): RefusalContext {
  if (!claims || !snapshot) return {};
  const contest = snapshot.contests.get(claims.cst);
  const campaign = snapshot.campaigns.get(claims.cmp);
  return {
    campaignName: campaign?.name,
    contact: campaign?.contact,
    expiresAt: new Date(claims.exp * 1000),
    contestName: contest?.name ?? claims.cst,
    phaseName: claims.phs,
    endedAt: phaseEndedAt(snapshot, claims, now),
    phaseStartsAt: phaseStartsLater(snapshot, claims, now),
    startsAt: new Date(claims.nbf * 1000),
  };
}
