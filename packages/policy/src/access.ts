import type { Scope } from "@phaselock/core";
import { closedForLink } from "./closures.ts";
import type { RevocationIndex } from "./revocations.ts";
import { currentPhase } from "./timeline.ts";
import type { Decision, LinkClaims, Phase, PolicySnapshot } from "./types.ts";

export interface AccessInput {
  snapshot: PolicySnapshot;
  revocations: RevocationIndex;
  /** Claims of a token that already passed signature, `exp` and `nbf` checks. */
  claims: LinkClaims;
  /**
   * The scope the route needs; `null` for a route with no mapping (denied), `undefined` for the
   * landing page and redemption, which need no particular scope.
   */
  requiredScope: Scope | null | undefined;
  now: Date;
}

/**
 * The policy half of the gateway check, in contract order after the token checks: revoked,
 * phase_closed, scope_denied, not_entitled; then `suspended`, ours rather than the contract's, so
 * reported only when every contract check passes. Rate limits and quotas come after this.
 */
export function decideAccess(input: AccessInput): Decision<{ phase: Phase }> {
  const { snapshot, revocations, claims, requiredScope, now } = input;

  const revocation = revocations.covers(claims);
  if (revocation) return { allowed: false, reason: "revoked", detail: revocation.id };

  // A phase ended early keeps its links dead even when a later timeline re-opens the window.
  if (closedForLink(snapshot.closures, claims)) return { allowed: false, reason: "phase_closed" };
  const contest = snapshot.contests.get(claims.cst);
  const phase = contest ? currentPhase(contest, now) : null;
  if (!phase || phase.name !== claims.phs) return { allowed: false, reason: "phase_closed" };

  if (requiredScope === null) return { allowed: false, reason: "scope_denied", detail: "unmapped route" };
  if (requiredScope !== undefined && !claims.scp.includes(requiredScope)) {
    return { allowed: false, reason: "scope_denied", detail: requiredScope };
  }

  if (!phase.memberData) {
    return { allowed: false, reason: "not_entitled", detail: "no member data in this phase" };
  }
  const entitled = snapshot.entitlements.get(claims.cmp)?.get(claims.phs);
  const ok =
    requiredScope === undefined
      ? claims.scp.some((s) => entitled?.has(s))
      : entitled?.has(requiredScope) === true;
  if (!ok) return { allowed: false, reason: "not_entitled", detail: requiredScope };

  if (snapshot.suspended.has(claims.jti)) return { allowed: false, reason: "suspended" };

  return { allowed: true, phase };
}

/**
 * When the phase of a link refused `phase_closed` starts, when that is still to come under the
 * current timeline and no closure ended the link: a phase postponed before it began, which takes
 * the link once it starts (the landing page's "may later", not "never will again").
 */
export function phaseStartsLater(
  snapshot: Pick<PolicySnapshot, "contests" | "closures">,
  claims: Pick<LinkClaims, "cst" | "phs" | "iat">,
  now: Date,
): Date | undefined {
  if (closedForLink(snapshot.closures, claims)) return undefined;
  const phase = snapshot.contests.get(claims.cst)?.phases.find((p) => p.name === claims.phs);
  return phase && phase.startsAt.getTime() > now.getTime() ? phase.startsAt : undefined;
}

/**
 * When the phase of a link refused `phase_closed` stopped taking that link: the earlier of the
 * closure that ended it early (its links stay dead whatever the timeline says later) and the
 * timeline's end of the phase, of those that have passed. A timeline replaced with an end long
 * past records its closure at the replacement: the phase ended at its end, not then.
 * `undefined` when the phase simply is not running (it has not started, or is gone from the
 * timeline), so a refusal never names a time still to come.
 */
export function phaseEndedAt(
  snapshot: Pick<PolicySnapshot, "contests" | "closures">,
  claims: Pick<LinkClaims, "cst" | "phs" | "iat">,
  now: Date,
): Date | undefined {
  const t = now.getTime();
  const closure = snapshot.closures.get(claims.cst)?.get(claims.phs);
  const closedAt =
    closure && closedForLink(snapshot.closures, claims) && closure.getTime() <= t ? closure : undefined;
  const phase = snapshot.contests.get(claims.cst)?.phases.find((p) => p.name === claims.phs);
  const endedAt = phase && phase.endsAt.getTime() <= t ? phase.endsAt : undefined;
  if (closedAt && endedAt) return closedAt.getTime() <= endedAt.getTime() ? closedAt : endedAt;
  return closedAt ?? endedAt;
}
