import type { DenyReason, Scope } from "@phaselock/core";
import type { Revocation } from "./revocation-schema.ts";

/** A half-open window [startsAt, endsAt) of one contest. */
export interface Phase {
  name: string;
  startsAt: Date;
  endsAt: Date;
  memberData: boolean;
}

export interface Contest {
  id: string;
  name: string;
  /** Sorted by startsAt, never overlapping. */
  phases: Phase[];
}

export interface CampaignLimits {
  requestsPerMinute: number;
  recordsPerHour: number;
}

export interface Campaign {
  id: string;
  name: string;
  contestId: string;
  /** Per-link limits; undefined fields fall back to service defaults. */
  limits: Partial<CampaignLimits>;
  /**
   * Whom volunteers should ask when a link is refused (a name and an e-mail or phone), shown on
   * the volunteer pages as plain text; undefined: "the coordinator who sent you the link".
   */
  contact?: string | undefined;
}

/** The claims of a verified link token, already parsed (times in whole epoch seconds). */
export interface LinkClaims {
  iss: string;
  aud: string;
  /** volunteer ref */
  sub: string;
  /** link id */
  jti: string;
  iat: number;
  nbf: number;
  exp: number;
  /** campaign id */
  cmp: string;
  /** contest id */
  cst: string;
  /** phase name */
  phs: string;
  scp: Scope[];
}

/** contestId -> phase name -> the latest instant it was ended early (see closures.ts). */
export type ClosureIndex = Map<string, Map<string, Date>>;

/** Everything a gateway needs to decide a request, held in memory. */
export interface PolicySnapshot {
  /** policy_state.version this snapshot reflects */
  version: number;
  contests: Map<string, Contest>;
  campaigns: Map<string, Campaign>;
  /** campaignId -> phase name -> scopes */
  entitlements: Map<string, Map<string, Set<Scope>>>;
  /**
   * Every revocation, as the source loaded them. A `PolicyState` indexes them (its
   * `revocations`, a `RevocationIndex`) and keeps this list empty: the index holds only what a
   * decision needs, a fifth of the memory of the revocations themselves.
   */
  revocations: Revocation[];
  /** ids of links suspended automatically (e.g. redeemed from too many devices) */
  suspended: Set<string>;
  /** Phases ended early: their links issued up to the closure stay dead whatever the timeline says. */
  closures: ClosureIndex;
}

export type Decision<T = object> =
  | ({ allowed: true } & T)
  | { allowed: false; reason: DenyReason; detail?: string };
