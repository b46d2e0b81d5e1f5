import { epochSeconds, NON_ISSUABLE_SCOPES, type Scope } from "@phaselock/core";
import type { Contest, Phase } from "./types.ts";

/** Refusal codes of {@link checkIssuance}, in the order the contract checks them. */
export type IssuanceRefusal = "not_found" | "scope_not_issuable" | "phase_closed" | "not_entitled";

export interface IssuanceInput {
  contest: Contest;
  phaseName: string;
  /** The campaign's entitlement for `phaseName`; undefined when it has none. */
  entitled: ReadonlySet<Scope> | undefined;
  requested: readonly Scope[];
  now: Date;
}

/** Validity window of a link, in whole epoch seconds as the JWT claims carry it. */
export interface LinkValidity {
  iat: number;
  nbf: number;
  exp: number;
}

/**
 * Whether a link for `phaseName` with `requested` scopes may be issued at `now`. A phase that has
 * not started yet is fine: the link is issued ahead and starts working with the phase.
 */
export function checkIssuance(
  input: IssuanceInput,
): { ok: true; phase: Phase } | { ok: false; code: IssuanceRefusal } {
  const { contest, phaseName, entitled, requested, now } = input;
  const phase = contest.phases.find((p) => p.name === phaseName);
  if (!phase) return { ok: false, code: "not_found" };
  if (requested.some((s) => NON_ISSUABLE_SCOPES.includes(s)))
    return { ok: false, code: "scope_not_issuable" };
  if (phase.endsAt.getTime() <= now.getTime()) return { ok: false, code: "phase_closed" };
  // Token times are whole seconds: a phase ending within the current second would give exp <= nbf.
  const window = linkValidity({ phase, now, ttlSeconds: 1 });
  if (window.exp <= window.nbf) return { ok: false, code: "phase_closed" };
  if (!phase.memberData) return { ok: false, code: "not_entitled" };
  if (!entitled || requested.some((s) => !entitled.has(s))) return { ok: false, code: "not_entitled" };
  return { ok: true, phase };
}

/**
 * The link's `iat`/`nbf`/`exp`: never valid before the phase starts nor after it ends, and a link
 * issued ahead gets its full TTL counted from the phase start. Check {@link checkIssuance} first.
 */
export function linkValidity(input: { phase: Phase; now: Date; ttlSeconds: number }): LinkValidity {
  const iat = epochSeconds(input.now);
  const nbf = Math.max(iat, Math.ceil(input.phase.startsAt.getTime() / 1000));
  const exp = Math.min(nbf + input.ttlSeconds, epochSeconds(input.phase.endsAt));
  return { iat, nbf, exp };
}
