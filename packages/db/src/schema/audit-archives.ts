import { bigint, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Stretches of the audit log retired by `pnpm audit:archive` (their partitions detached and
 * dropped after the archive verified against a signed checkpoint). Append-only, like the events:
 * the live log is checked from the newest archive's head on (`verifyStored`), and a leaf range
 * touching an archived event is refused instead of answered from a partial table.
 */
export const auditArchives = pgTable("audit_archives", {
  /** first and last seq of the stretch */
  fromSeq: bigint("from_seq", { mode: "number" }).primaryKey(),
  toSeq: bigint("to_seq", { mode: "number" }).notNull(),
  /** chain hash of the event `toSeq`: the live log's first event links to it */
  head: text("head").notNull(),
  /** the months (`YYYY-MM`) whose partitions it retired */
  months: jsonb("months").notNull().$type<string[]>(),
  /** tree size of the signed checkpoint stored with the archive (at least `toSeq`) */
  checkpointSize: bigint("checkpoint_size", { mode: "number" }).notNull(),
  /**
   * The tree of the first `toSeq` leaves (its frontier, base64): `verifyStored` resumes from it and
   * compares the live leaves with every later signed checkpoint. Not trusted (an owner can write
   * this row): a forged one gives no signed root. Null only on a row no archiver of this version
   * wrote, from which nothing later is vouched for.
   */
  frontier: jsonb("frontier").$type<string[]>(),
  /** SHA-256 (hex) of the archive's NDJSON file */
  fileSha256: text("file_sha256").notNull(),
  archivedAt: timestamp("archived_at", { withTimezone: true, precision: 3 }).notNull(),
});
