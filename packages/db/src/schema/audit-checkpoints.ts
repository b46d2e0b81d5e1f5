import { bigint, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Every signed checkpoint of the audit tree, one per tree size. Each extends the previous one
 * (it is computed from the stored `frontier`), so the series is one log, never a fork.
 */
export const auditCheckpoints = pgTable("audit_checkpoints", {
  treeSize: bigint("tree_size", { mode: "number" }).primaryKey(),
  /** Base64 root hash, as in the note. */
  rootHash: text("root_hash").notNull(),
  /** The signed note, byte for byte as served. */
  note: text("note").notNull(),
  /**
   * Roots (base64) of the perfect subtrees covering the first `treeSize` leaves, largest first:
   * the next checkpoint folds only newer leaves into them.
   */
  frontier: jsonb("frontier").notNull().$type<string[]>(),
  createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull(),
});

/** The checkpoint signing key per log origin. The private key is encrypted under KEY_ENCRYPTION_KEY. */
export const auditKeys = pgTable("audit_keys", {
  origin: text("origin").primaryKey(),
  /** The verifier key string (`name+keyid+base64`) served at `/.well-known/audit-key`. */
  verifierKey: text("verifier_key").notNull(),
  /** The `PRIVATE+KEY+…` signer string, AES-256-GCM encrypted under the KEK. */
  privateKeyEnc: text("private_key_enc").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});
