import { jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/** Ed25519 signing keys. The private key is AES-256-GCM encrypted under KEY_ENCRYPTION_KEY. */
export const signingKeys = pgTable("signing_keys", {
  kid: text("kid").primaryKey(),
  publicJwk: jsonb("public_jwk").notNull().$type<Record<string, string>>(),
  privateKeyEnc: text("private_key_enc").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  /** When a newer key took over signing; null for the active key. */
  retiredAt: timestamp("retired_at", { withTimezone: true }),
  /** Latest `exp` of any token this key signed: the key stays published until then. */
  lastExpiresAt: timestamp("last_expires_at", { withTimezone: true }),
  /** Emergency revocation (key compromise): never published or trusted again. */
  revokedAt: timestamp("revoked_at", { withTimezone: true }),
  revokedReason: text("revoked_reason"),
});
