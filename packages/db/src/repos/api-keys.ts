import { randomBytes } from "node:crypto";
import { PhaselockError, randomId, sha256Hex } from "@phaselock/core";
import { and, asc, eq, isNull, sql } from "drizzle-orm";
import type { Db } from "../client.ts";
import { apiKeys } from "../schema/index.ts";
import { currentPolicyVersion, logPolicyChange } from "./policy-state.ts";

export type ApiKeyRole = "admin" | "coordinator" | "auditor";

export interface ApiKey {
  id: string;
  role: ApiKeyRole;
  campaignId: string | null;
  label: string | null;
  createdAt: Date;
}

export interface ApiKeysRepo {
  /**
   * Creates a key; `key` (the secret, `plk_…`) is returned once and only its SHA-256 is stored.
   * `campaignId` is required for (and only for) coordinators.
   */
  create(input: { role: ApiKeyRole; campaignId?: string | null; label?: string | null }): Promise<{
    id: string;
    key: string;
  }>;
  /** The live (not deleted) key whose secret this is, or null. */
  findActiveByKey(secret: string): Promise<ApiKey | null>;
  /** Live keys, oldest first. */
  list(): Promise<ApiKey[]>;
  /**
   * Marks the key deleted (bumps the policy version so caches drop it). When there was no live
   * key, nothing is written and `version` is the current version.
   */
  delete(id: string): Promise<{ version: number; deleted: boolean }>;
}

const publicColumns = {
  id: apiKeys.id,
  role: apiKeys.role,
  campaignId: apiKeys.campaignId,
  label: apiKeys.label,
  createdAt: apiKeys.createdAt,
};

/** SHA-256 hex of an API key secret: what `api_keys.key_hash` holds. */
export const hashApiKey = (secret: string): string => sha256Hex(secret);

export const apiKeysRepo = (db: Db): ApiKeysRepo => ({
  create: async ({ role, campaignId = null, label = null }) => {
    // A coordinator acts for exactly one campaign; the other roles for none.
    if ((role === "coordinator") !== (campaignId !== null)) {
      throw new PhaselockError(
        "validation",
        "campaignId is required for a coordinator key, and only for one",
      );
    }
    const id = randomId("key");
    const key = `plk_${randomBytes(32).toString("base64url")}`;
    await db.insert(apiKeys).values({ id, role, campaignId, label, keyHash: hashApiKey(key) });
    return { id, key };
  },
  findActiveByKey: async (secret) => {
    const [row] = await db
      .select(publicColumns)
      .from(apiKeys)
      .where(and(eq(apiKeys.keyHash, hashApiKey(secret)), isNull(apiKeys.deletedAt)));
    return row ?? null;
  },
  list: () =>
    db
      .select(publicColumns)
      .from(apiKeys)
      .where(isNull(apiKeys.deletedAt))
      .orderBy(asc(apiKeys.createdAt), asc(apiKeys.id)),
  delete: (id) =>
    db.transaction(async (tx) => {
      const deleted = await tx
        .update(apiKeys)
        .set({ deletedAt: sql`now()` })
        .where(and(eq(apiKeys.id, id), isNull(apiKeys.deletedAt)))
        .returning({ id: apiKeys.id });
      if (deleted.length === 0) return { version: await currentPolicyVersion(tx), deleted: false };
      return { version: await logPolicyChange(tx, { type: "api-key-deleted", id }), deleted: true };
    }),
});
