import type { Clock, Scope } from "@phaselock/core";
import {
  type Campaign,
  type Contest,
  decideAccess,
  type LinkClaims,
  type Phase,
  type PolicySnapshot,
  type RevocationIndex,
} from "@phaselock/policy";
import { type Refusal, type RefusalContext, refusal } from "./refusals.ts";

/** The gateway's in-memory view of policy state, kept current by the change feed. */
export interface PolicyView {
  snapshot(): PolicySnapshot;
  revocations(): RevocationIndex;
  /** false when the feed has not been confirmed recently: every check then fails closed */
  isFresh(now: Date): boolean;
}

export type VerifyOutcome =
  | { ok: true; claims: LinkClaims }
  | { ok: false; reason: "token_invalid" | "expired" | "not_yet_valid"; claims?: LinkClaims | undefined };

export interface TokenVerifier {
  verify(token: string): Promise<VerifyOutcome>;
}

export type CheckOutcome =
  | { ok: true; claims: LinkClaims; phase: Phase; campaign: Campaign | undefined; contest: Contest }
  | { ok: false; refusal: Refusal; claims?: LinkClaims | undefined };

/**
 * The per-request decision, in the contract's order: token present; signature, alg, typ, iss,
 * aud, kid; exp; nbf; (state fresh, else fail closed); revocation; current phase; route scope;
 * entitlement; then our automatic suspension (all four in `decideAccess`). Rate limits and quotas come after, in the proxy route.
 *
 * `requiredScope`: a scope for a mapped route, `null` for an unmapped route (always
 * `scope_denied`), `undefined` for the landing page and redemption (no route).
 */
export function createGatekeeper(deps: { clock: Clock; policy: PolicyView; verifier: TokenVerifier }) {
  const { clock, policy, verifier } = deps;

  function context(claims: LinkClaims | undefined, snapshot: PolicySnapshot | undefined): RefusalContext {
    if (!claims || !snapshot) return {};
    const contest = snapshot.contests.get(claims.cst);
    const phase = contest?.phases.find((p) => p.name === claims.phs);
    return {
      campaignName: snapshot.campaigns.get(claims.cmp)?.name,
      contestName: contest?.name ?? claims.cst,
      phaseName: claims.phs,
      endedAt: phase?.endsAt,
      startsAt: new Date(claims.nbf * 1000),
    };
  }

  return {
    async check(token: string | undefined, requiredScope: Scope | null | undefined): Promise<CheckOutcome> {
      if (!token) return { ok: false, refusal: refusal("token_missing") };
      const verified = await verifier.verify(token);
      const now = clock.now();
      if (!verified.ok) {
        const ctx = verified.reason === "token_invalid" ? {} : context(verified.claims, policy.snapshot());
        return { ok: false, refusal: refusal(verified.reason, ctx), claims: verified.claims };
      }
      const { claims } = verified;
      if (!policy.isFresh(now)) return { ok: false, refusal: refusal("unavailable"), claims };
      const snapshot = policy.snapshot();
      const decision = decideAccess({
        snapshot,
        revocations: policy.revocations(),
        claims,
        requiredScope,
        now,
      });
      if (!decision.allowed) {
        return { ok: false, refusal: refusal(decision.reason, context(claims, snapshot)), claims };
      }
      const contest = snapshot.contests.get(claims.cst)!;
      return {
        ok: true,
        claims,
        phase: decision.phase,
        contest,
        campaign: snapshot.campaigns.get(claims.cmp),
      };
    },
  };
}

export type Gatekeeper = ReturnType<typeof createGatekeeper>;
