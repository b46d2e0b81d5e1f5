import type { Db } from "../client.ts";
import { type ApiKeysRepo, apiKeysRepo } from "./api-keys.ts";
import { type CampaignsRepo, campaignsRepo } from "./campaigns.ts";
import { type ContestsRepo, contestsRepo } from "./contests.ts";
import { type EntitlementsRepo, entitlementsRepo } from "./entitlements.ts";
import { type LinksRepo, linksRepo } from "./links.ts";
import { type PolicyStateRepo, policyStateRepo } from "./policy-state.ts";
import { type RevocationsRepo, revocationsRepo } from "./revocations.ts";
import { type SessionsRepo, sessionsRepo } from "./sessions.ts";
import { type SigningKeysRepo, signingKeysRepo } from "./signing-keys.ts";

export * from "./api-keys.ts";
export * from "./campaigns.ts";
export * from "./contests.ts";
export * from "./cursor.ts";
export * from "./entitlements.ts";
export * from "./links.ts";
export * from "./policy-state.ts";
export * from "./revocations.ts";
export * from "./sessions.ts";
export * from "./signing-keys.ts";

export interface Repos {
  contests: ContestsRepo;
  campaigns: CampaignsRepo;
  entitlements: EntitlementsRepo;
  apiKeys: ApiKeysRepo;
  links: LinksRepo;
  signingKeys: SigningKeysRepo;
  revocations: RevocationsRepo;
  policyState: PolicyStateRepo;
  sessions: SessionsRepo;
}

/**
 * The repositories over one database (either driver). Every policy write runs in a transaction
 * that bumps `policy_state.version` and returns the new `version`, for the caller to publish.
 */
export const createRepos = (db: Db): Repos => ({
  contests: contestsRepo(db),
  campaigns: campaignsRepo(db),
  entitlements: entitlementsRepo(db),
  apiKeys: apiKeysRepo(db),
  links: linksRepo(db),
  signingKeys: signingKeysRepo(db),
  revocations: revocationsRepo(db),
  policyState: policyStateRepo(db),
  sessions: sessionsRepo(db),
});
