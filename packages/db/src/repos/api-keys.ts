import { randomBytes } from "node:crypto";
import { PhaselockError, randomId, sha256Hex } from "@phaselock/core";
import { and, asc, eq, isNull, sql } from "drizzle-orm";
import type { Db } from "../client.ts";
import { apiKeys } from "../schema/index.ts";
import { clampLimit, decodeCursor, encodeCursor, pageOf } from "./cursor.ts";
import type { Page } from "./links.ts";
import { currentPolicyVersion, logPolicyChange } from "./policy-state.ts";

export type ApiKeyRole = "admin" | "coordinator" | "auditor";

export interface ApiKey {
  id: string;
  role: ApiKeyRole;
  campaignId: string | null;
  label: string | null;
  createdAt: Date;
  /** When the key last authenticated a request (to the minute: writes are throttled). */
  lastUsedAt: Date | null;
}

/** `lastUsedAt` is written at most this often per key: a busy key must not write on every request. */
export const LAST_USED_WRITE_INTERVAL_MS = 60_000;

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
  /** One page of live keys, oldest first by (createdAt, id). */
  listPage(query: { limit: number; cursor?: string | null | undefined }): Promise<Page<ApiKey>>;
  /**
   * Records that the key authenticated a request at `now`: at most one write per key per
   * {@link LAST_USED_WRITE_INTERVAL_MS} (remembered in this process, and checked again in SQL so
   * several processes do not add up), never moving `lastUsedAt` backwards.
   */
  recordUse(id: string, now: Date): Promise<void>;
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
  lastUsedAt: apiKeys.lastUsedAt,
};

// Millisecond precision, as a cursor carries it (the column holds microseconds).
const createdMs = sql`date_trunc('milliseconds', ${apiKeys.createdAt})`;

/** SHA-256 hex of an API key secret: what `api_keys.key_hash` holds. */
export const hashApiKey = (secret: string): string => sha256Hex(secret);

export const apiKeysRepo = (db: Db): ApiKeysRepo => {
  const lastWrite = new Map<string, number>();
  return {
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
    listPage: async ({ limit: requested, cursor }) => {
      const limit = clampLimit(requested);
      const after = cursor ? decodeCursor(cursor) : null;
      const rows = await db
        .select(publicColumns)
        .from(apiKeys)
        .where(
          and(
            isNull(apiKeys.deletedAt),
            after
              ? sql`(${createdMs}, ${apiKeys.id}) > (${after.at.toISOString()}::timestamptz, ${after.id})`
              : undefined,
          ),
        )
        .orderBy(asc(createdMs), asc(apiKeys.id))
        .limit(limit + 1);
      return pageOf(rows, limit, (k) => encodeCursor({ at: k.createdAt, id: k.id }));
    },
    recordUse: async (id, now) => {
      const t = now.getTime();
      const previous = lastWrite.get(id);
      if (previous !== undefined && t - previous < LAST_USED_WRITE_INTERVAL_MS && t >= previous) return;
      lastWrite.set(id, t);
      // Bounded: a process serving many keys forgets the oldest (the SQL check still throttles).
      if (lastWrite.size > 10_000) lastWrite.delete(lastWrite.keys().next().value!);
      const threshold = new Date(t - LAST_USED_WRITE_INTERVAL_MS).toISOString();
      await db
        .update(apiKeys)
        .set({ lastUsedAt: now })
        .where(
          and(
            eq(apiKeys.id, id),
            sql`(${apiKeys.lastUsedAt} is null or ${apiKeys.lastUsedAt} <= ${threshold}::timestamptz)`,
          ),
        );
    },
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
  };
};
