import { and, desc, eq, gt, isNull, or, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { signingKeys } from "../schema/index.ts";
import { currentPolicyVersion, logPolicyChange } from "./policy-state.ts";

export type SigningKeyRow = typeof signingKeys.$inferSelect;

/** A signing key without its (encrypted) private half: what may be published. */
export type PublicSigningKey = Omit<SigningKeyRow, "privateKeyEnc">;

export interface NewSigningKey {
  kid: string;
  publicJwk: Record<string, string>;
  /** AES-256-GCM blob from `encryptPrivateKey`. */
  privateKeyEnc: string;
  createdAt?: Date | undefined;
}

export interface SigningKeysRepo {
  /**
   * Stores a new key (a policy write: bumps the version). With `retireActiveAt`, every key active
   * until now is retired in the same transaction, so rotation is atomic.
   */
  insert(key: NewSigningKey, opts?: { retireActiveAt?: Date }): Promise<{ version: number }>;
  /**
   * Active keys, and retired keys that may still verify a live token (`lastExpiresAt` > now or
   * unknown); never a revoked key.
   */
  listPublished(now: Date): Promise<PublicSigningKey[]>;
  /** The newest unretired key, private blob included, or null. */
  getActive(): Promise<SigningKeyRow | null>;
  /** Retires a key. When it was already retired or unknown, `version` is the current version. */
  retire(kid: string, now: Date): Promise<{ version: number; retired: boolean }>;
  /**
   * Emergency revocation: marks the key revoked (it leaves the JWKS and every gateway's ring) and
   * logs the change, in one transaction. `not_found` for an unknown kid, `already` when revoked.
   */
  revoke(
    kid: string,
    reason: string,
    now: Date,
  ): Promise<{ version: number; status: "revoked" } | { status: "not_found" | "already" }>;
  /**
   * Raises the key's `lastExpiresAt` to `exp` (never lowers it), only while the key is neither
   * retired nor revoked: false (nothing written) once it is. Inside `tx` when given, where the
   * row lock orders it against a rotation or revocation: whichever commits first, the other sees.
   */
  bumpLastExpiresAt(kid: string, exp: Date, tx?: Tx): Promise<boolean>;
}

const publicColumns = {
  kid: signingKeys.kid,
  publicJwk: signingKeys.publicJwk,
  createdAt: signingKeys.createdAt,
  retiredAt: signingKeys.retiredAt,
  lastExpiresAt: signingKeys.lastExpiresAt,
  revokedAt: signingKeys.revokedAt,
  revokedReason: signingKeys.revokedReason,
};

/** See `SigningKeysRepo.listPublished`. Newest first. */
export async function loadPublishedKeys(db: Db | Tx, now: Date): Promise<PublicSigningKey[]> {
  return db
    .select(publicColumns)
    .from(signingKeys)
    .where(
      and(
        isNull(signingKeys.revokedAt),
        or(
          isNull(signingKeys.retiredAt),
          isNull(signingKeys.lastExpiresAt),
          gt(signingKeys.lastExpiresAt, now),
        ),
      ),
    )
    .orderBy(desc(signingKeys.createdAt), desc(signingKeys.kid));
}

export const signingKeysRepo = (db: Db): SigningKeysRepo => ({
  insert: (key, opts = {}) =>
    db.transaction(async (tx) => {
      const version = await logPolicyChange(tx, {
        type: "signing-key",
        kid: key.kid,
        publicJwk: key.publicJwk,
      });
      if (opts.retireActiveAt) {
        await tx
          .update(signingKeys)
          .set({ retiredAt: opts.retireActiveAt })
          .where(isNull(signingKeys.retiredAt));
      }
      await tx.insert(signingKeys).values({
        kid: key.kid,
        publicJwk: key.publicJwk,
        privateKeyEnc: key.privateKeyEnc,
        ...(key.createdAt ? { createdAt: key.createdAt } : {}),
      });
      return { version };
    }),

  listPublished: (now) => loadPublishedKeys(db, now),

  getActive: async () => {
    const [row] = await db
      .select()
      .from(signingKeys)
      .where(and(isNull(signingKeys.retiredAt), isNull(signingKeys.revokedAt)))
      .orderBy(desc(signingKeys.createdAt), desc(signingKeys.kid))
      .limit(1);
    return row ?? null;
  },

  retire: (kid, now) =>
    db.transaction(async (tx) => {
      const updated = await tx
        .update(signingKeys)
        .set({ retiredAt: now })
        .where(and(eq(signingKeys.kid, kid), isNull(signingKeys.retiredAt)))
        .returning({ kid: signingKeys.kid, publicJwk: signingKeys.publicJwk });
      const [row] = updated;
      if (!row) return { version: await currentPolicyVersion(tx), retired: false };
      const change = { type: "signing-key", kid, publicJwk: row.publicJwk };
      return { version: await logPolicyChange(tx, change), retired: true };
    }),

  revoke: (kid, reason, now) =>
    db.transaction(async (tx) => {
      const [row] = await tx
        .select({ revokedAt: signingKeys.revokedAt })
        .from(signingKeys)
        .where(eq(signingKeys.kid, kid))
        .for("update");
      if (!row) return { status: "not_found" as const };
      if (row.revokedAt) return { status: "already" as const };
      await tx
        .update(signingKeys)
        .set({
          revokedAt: now,
          revokedReason: reason,
          retiredAt: sql`coalesce(${signingKeys.retiredAt}, ${now.toISOString()}::timestamptz)`,
        })
        .where(eq(signingKeys.kid, kid));
      const version = await logPolicyChange(tx, { type: "signing-key-revoked", kid, reason });
      return { version, status: "revoked" as const };
    }),

  bumpLastExpiresAt: async (kid, exp, tx) => {
    // GREATEST ignores NULL, so the first bump sets it and later ones only raise it.
    const rows = await (tx ?? db)
      .update(signingKeys)
      .set({ lastExpiresAt: sql`greatest(${signingKeys.lastExpiresAt}, ${exp.toISOString()}::timestamptz)` })
      .where(and(eq(signingKeys.kid, kid), isNull(signingKeys.retiredAt), isNull(signingKeys.revokedAt)))
      .returning({ kid: signingKeys.kid });
    return rows.length > 0;
  },
});
