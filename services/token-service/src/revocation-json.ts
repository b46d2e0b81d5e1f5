import type { Revocation } from "@phaselock/policy";

/** A revocation as the API answers it and the audit trail records it. */
export const revocationJson = (r: Revocation) => ({
  id: r.id,
  scope: r.scope,
  linkId: r.linkId ?? null,
  volunteerRef: r.volunteerRef ?? null,
  campaignId: r.campaignId ?? null,
  contestId: r.contestId ?? null,
  phase: r.phase ?? null,
  reason: r.reason,
  actor: r.actor,
  effectiveAt: r.effectiveAt.toISOString(),
  createdAt: (r.createdAt ?? r.effectiveAt).toISOString(),
});
