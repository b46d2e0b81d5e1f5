import { indexClosures, type PolicySnapshot } from "@phaselock/policy";
import type { Db } from "./client.ts";
import { loadCampaigns } from "./repos/campaigns.ts";
import { loadClosures, loadContests } from "./repos/contests.ts";
import { loadEntitlements } from "./repos/entitlements.ts";
import { loadSuspendedLinks } from "./repos/links.ts";
import { currentPolicyVersion } from "./repos/policy-state.ts";
import { loadRevocations } from "./repos/revocations.ts";
import { loadPublishedKeys } from "./repos/signing-keys.ts";

/**
 * Everything a gateway decides on, read in one REPEATABLE READ, read-only transaction so the
 * version matches the content exactly (every policy write bumps the version in its own transaction).
 */
export function loadPolicySnapshot(db: Db): Promise<PolicySnapshot> {
  return db.transaction(
    async (tx) => {
      // Sequential on purpose: one transaction is one connection.
      const version = await currentPolicyVersion(tx);
      const contests = await loadContests(tx);
      const campaigns = await loadCampaigns(tx);
      const entitlements = await loadEntitlements(tx);
      const revocations = await loadRevocations(tx);
      const suspended = await loadSuspendedLinks(tx);
      const closures = await loadClosures(tx);
      return {
        version,
        contests: new Map(contests.map((c) => [c.id, c])),
        campaigns: new Map(campaigns.map((c) => [c.id, c])),
        entitlements,
        revocations,
        suspended,
        closures: indexClosures(closures),
      };
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );
}

/** A JWKS: `{ keys }`, each the stored public JWK with its `kid`. */
export interface PublicJwks {
  keys: Array<Record<string, string> & { kid: string }>;
}

/** The keys the token service publishes at `/.well-known/jwks.json` (see `listPublished`). */
export async function loadPublicKeys(db: Db, now: Date): Promise<PublicJwks> {
  const rows = await loadPublishedKeys(db, now);
  return { keys: rows.map((k) => ({ ...k.publicJwk, kid: k.kid })) };
}
